"""Tests for training/evaluate.py and the report it feeds (training/report.py), on a tiny synthetic category."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoint import load_checkpoint
from tests.conftest import write_tiny_checkpoint
from training.data import CategoryIndex, index_category
from training.defects import DEFECTS
from training.evaluate import HEADLINE, evaluate, ground_truth
from training.metrics import auroc
from training.report import headline, image_part, write_loss_curve, write_report
from training.synth import write_category

CPU = torch.device("cpu")
N_GOOD = 3


@pytest.fixture(scope="module")
def run_and_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_category(root, "demo", seed=0, image_size=32, n_train=4, n_test_good=N_GOOD, n_test_per_defect=1)
    index = index_category(root, "demo")
    checkpoint = load_checkpoint(write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "demo.safetensors"))
    return evaluate(checkpoint, index, CPU), index, checkpoint


def test_metrics_have_the_headline_keys_and_values_in_unit_range(run_and_index):
    run, _, checkpoint = run_and_index
    metrics = run.metrics
    assert set(HEADLINE) <= set(metrics)
    unit = [k for k, v in metrics.items() if isinstance(v, float)]
    assert set(HEADLINE) <= set(unit)
    for key in unit:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["images"] == N_GOOD + len(DEFECTS)
    assert metrics["anomalous_images"] == len(DEFECTS)
    assert metrics["category"] == "demo"
    assert metrics["thresholds"] == {
        "image_threshold": checkpoint.calibration.image_threshold,
        "pixel_threshold": checkpoint.calibration.pixel_threshold,
        "method": "normal-quantile",
    }
    assert sorted(metrics["per_defect"]) == sorted(DEFECTS)
    for per_defect in metrics["per_defect"].values():
        assert per_defect["images"] == N_GOOD + 1 and per_defect["anomalous_images"] == 1
        assert all(0.0 <= per_defect[k] <= 1.0 for k in HEADLINE)


def test_run_arrays_match_the_test_set(run_and_index):
    run, index, _ = run_and_index
    n = len(index.test)
    assert run.defects == [s.defect for s in index.test]
    assert run.scores.shape == (n,) and run.scores.dtype == np.float64
    assert run.images.shape == run.reconstructions.shape == (n, 3, 24, 24)  # the checkpoint's input size
    assert all(m.shape == (32, 32) for m in run.maps)  # maps at the ground truth's resolution
    assert all(mask.shape == (32, 32) and mask.dtype == bool for mask in run.masks)
    labels = np.array([d != "good" for d in run.defects])
    assert run.metrics["image_auroc"] == pytest.approx(auroc(labels, run.scores))
    assert not any(run.masks[i].any() for i in range(n) if not labels[i])
    assert all(run.masks[i].any() for i in range(n) if labels[i])


def test_ground_truth_of_good_images_is_empty_at_their_size(run_and_index):
    _, index, _ = run_and_index
    masks = ground_truth(index)
    for sample, mask in zip(index.test, masks, strict=True):
        with Image.open(sample.path) as image:
            assert mask.shape == (image.height, image.width)


def test_evaluate_needs_good_and_defective_images(run_and_index):
    _, index, checkpoint = run_and_index
    goods = CategoryIndex(
        index.root, index.category, index.train, [s for s in index.test if not s.is_anomalous]
    )
    with pytest.raises(ValueError, match="both good and defective"):
        evaluate(checkpoint, goods, CPU)


def test_write_report_writes_every_file(run_and_index, tmp_path):
    run, _, _ = run_and_index
    out = write_report(run, tmp_path / "report")
    names = {p.name for p in out.iterdir()}
    assert names == {"metrics.json", "report.md", "roc.png", "pro.png", "examples.png"}
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(run.metrics))
    report = (out / "report.md").read_text()
    assert report.startswith("# Evaluation: demo")
    for row in ("| all |", *(f"| {d} |" for d in DEFECTS)):
        assert row in report
    for png in ("roc.png", "pro.png", "examples.png"):
        with Image.open(out / png) as image:
            assert image.format == "PNG" and image.width > 100


def test_headline_is_the_printed_summary(run_and_index):
    run, _, _ = run_and_index
    summary = headline(run.metrics)
    assert list(summary)[: len(HEADLINE)] == list(HEADLINE)
    assert summary["image_auroc"] == round(run.metrics["image_auroc"], 6)
    json.dumps(summary)  # plain floats


def test_loss_curve(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_mse": 0.5 / e, "mean_image_mse": 0.6}
        for e in (1, 2, 3)
    ]
    path = write_loss_curve(history, tmp_path / "loss.png")
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_report_panels_show_the_image_without_a_letterboxs_band():
    x = torch.zeros(3, 12, 12)
    x[:, 3:9] = 1.0  # a 1:2 image letterboxed into rows 3..8
    part = image_part(x, (20, 40), "letterbox")
    assert part.shape == (6, 12, 3) and part.min() == 1.0
    assert image_part(x, (20, 40), "stretch").shape == (12, 12, 3)
    assert image_part(x[:1], (20, 40), "letterbox").shape == (6, 12)  # greyscale: (h, w)
