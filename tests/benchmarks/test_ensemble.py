"""The checkpoint average's measurement: units of each member's thresholds, metrics at 1."""

import json

import numpy as np
import pytest
import torch

from benchmarks.ensemble import average, main
from tests.conftest import write_tiny_checkpoint
from training.evaluate import EvaluationRun
from training.synth import write_category


def fake_run(
    scores: list[float], maps: list[np.ndarray], defects: list[str], masks: list[np.ndarray]
) -> EvaluationRun:
    return EvaluationRun(
        metrics={},
        defects=defects,
        scores=np.array(scores),
        images=torch.zeros(len(scores), 1, 2, 2),
        reconstructions=torch.zeros(len(scores), 1, 2, 2),
        maps=maps,
        masks=masks,
    )


def test_members_are_averaged_in_units_of_their_own_thresholds():
    defects = ["good", "good", "crack", "crack"]
    truth = [np.zeros((2, 2)), np.zeros((2, 2)), np.array([[1.0, 0], [0, 0]]), np.array([[0, 0], [0, 1.0]])]
    # Member a ranks every defect on top; member b ranks badly, on a scale 200 times larger.
    masks = [m > 0 for m in truth]
    a = fake_run([0.1, 0.2, 0.8, 0.9], [0.5 * m for m in truth], defects, masks)
    b = fake_run([30.0, 20.0, 10.0, 25.0], [100 * (1 - m) for m in truth], defects, masks)
    metrics = average([a, b], [(0.5, 0.25), (100.0, 200.0)])
    # In units: a 0.2, 0.4, 1.6, 1.8; b 0.3, 0.2, 0.1, 0.25 → mean 0.25, 0.3, 0.85, 1.025.
    assert metrics["image_auroc"] == 1.0
    assert metrics["image_precision"] == 1.0 and metrics["image_recall"] == 0.5  # only 1.025 above 1
    assert metrics["per_defect"]["crack"]["image_auroc"] == 1.0
    # Pixels: a's defect pixels are 2 units, b's all 0.5 or 0 → the defect pixels (1.0) stand out.
    assert metrics["pixel_auroc"] == 1.0 and metrics["pixel_iou"] == 0.0  # 1.0 is not above 1
    # Averaged as they are, b's scale decides: 15.05, 10.1, 5.4, 12.95.
    raw = average([a, b], [(1.0, 1.0), (1.0, 1.0)])
    assert raw["image_auroc"] == 0.25


@pytest.fixture(scope="module")
def category(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_category(root, "demo", seed=0, image_size=32, n_train=4, n_test_good=3, n_test_per_defect=1)
    folder = tmp_path_factory.mktemp("ckpt")
    checkpoints = [write_tiny_checkpoint(folder / f"demo-{seed}.safetensors", seed=seed) for seed in (0, 1)]
    return root, checkpoints


def test_a_checkpoint_averaged_with_itself_scores_as_it_does_alone(category, capsys):
    root, (first, _) = category
    code = main(["--data-root", str(root), "--category", "demo", "--checkpoints", str(first), str(first)])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    member, average_ = result["members"][0], result["average"]
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "pixel_iou"):
        assert average_[key] == pytest.approx(member[key], abs=1e-6), key
    assert average_["image_recall"] == member["image_recall"]
    assert set(average_["per_defect"]) == set(member["per_defect"])


def test_two_checkpoints_give_members_and_an_average_written_to_out(category, tmp_path, capsys):
    root, checkpoints = category
    out = tmp_path / "ensemble.json"
    argv = ["--data-root", str(root), "--category", "demo", "--checkpoints", *map(str, checkpoints)]
    assert main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [m["checkpoint"] for m in result["members"]] == [str(c) for c in checkpoints]
    assert result["members"][0] != result["members"][1]  # two different models
    assert 0.0 <= result["average"]["image_auroc"] <= 1.0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_one_checkpoint_or_a_missing_one_is_a_usage_error(category, tmp_path, capsys):
    root, (first, _) = category
    with pytest.raises(SystemExit) as exit_:
        main(["--data-root", str(root), "--category", "demo", "--checkpoints", str(first)])
    assert exit_.value.code == 2
    missing = tmp_path / "nope.safetensors"
    code = main(["--data-root", str(root), "--category", "demo", "--checkpoints", str(first), str(missing)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "nope.safetensors" in err[-1]
