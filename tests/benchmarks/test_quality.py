"""The quality harness's pass-through of fit options (its trainings are the training CLI's, tested there)."""

import argparse
import json
import re

import pytest

from benchmarks.quality import (
    CONFIGURATIONS,
    collect,
    default_budget,
    fit_options,
    passed_through,
    roi_by_category,
)
from training.cli import build_parser


def arguments(**overrides) -> argparse.Namespace:
    values = {"precision": None, "ema_decay": None, "roi": {}, **overrides}
    return argparse.Namespace(**values)


def test_nothing_passes_through_by_default():
    assert passed_through(arguments(), "tire") == []
    assert fit_options(vars(arguments())) == ""


def test_precision_and_weight_average_reach_every_category_and_a_box_only_its_own():
    args = arguments(precision="bfloat16", ema_decay=0.995, roi={"tire": "0.2,0.1,0.8,0.9"})
    assert passed_through(args, "tire") == [
        "--precision",
        "bfloat16",
        "--ema-decay",
        "0.995",
        "--roi",
        "0.2,0.1,0.8,0.9",
    ]
    assert passed_through(args, "magnetic_tile") == ["--precision", "bfloat16", "--ema-decay", "0.995"]
    assert fit_options(vars(args)) == "--precision bfloat16, --ema-decay 0.995, --roi tire=0.2,0.1,0.8,0.9"


def test_roi_by_category_parses_each_box():
    boxes = roi_by_category(["tire=0.2,0.1,0.8,0.9", "bottle=0,0,1,0.5"], ["tire", "bottle"])
    assert boxes == {"tire": "0.2,0.1,0.8,0.9", "bottle": "0,0,1,0.5"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.2,0.1,0.8,0.9", "expected CATEGORY=LEFT,TOP,RIGHT,BOTTOM"),
        ("tire=", "expected CATEGORY=LEFT,TOP,RIGHT,BOTTOM"),
        ("bottle=0.2,0.1,0.8,0.9", "'bottle' is not among --categories"),
        ("tire=0.8,0.1,0.2,0.9", "--roi tire: a region of interest is (left, top, right, bottom)"),
        ("tire=0.2,0.1,0.8", "--roi tire: a region of interest is 4 numbers"),
        ("tire=a,b,c,d", "--roi tire: could not convert"),
    ],
)
def test_roi_by_category_names_what_is_wrong(value, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        roi_by_category([value], ["tire"])


def quality_json(folder, **fit):
    folder.mkdir()
    document = {
        "arguments": {"max_steps": 1200, "epochs": 0, "seed": 0, "device": "cpu", **fit},
        "load_average": [0.0, 0.0, 0.0],
        "torch": "x",
        "wall_s": 1.0,
        "results": [],
    }
    (folder / "quality.json").write_text(json.dumps(document))
    return folder


def test_collect_refuses_runs_with_other_fit_options(tmp_path):
    plain = quality_json(tmp_path / "a")
    boxed = quality_json(tmp_path / "b", roi={"tire": "0.2,0.1,0.8,0.9"})
    with pytest.raises(SystemExit, match="differ in budget, seed, fit options or device"):
        collect([plain, boxed], tmp_path / "out")
    # Documents written before the pass-through (no such keys) collect with plain runs.
    assert collect([plain, quality_json(tmp_path / "c", precision=None)], tmp_path / "out") == 0


def test_the_harness_budget_defaults_to_fits_own_for_the_precision_asked(monkeypatch):
    import training.fit as fit_module

    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: True)
    assert default_budget(None, "cpu") == 1200  # fit's auto: float32 on a CPU
    assert default_budget("bfloat16", "cpu") == 4800
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: False)
    with pytest.raises(SystemExit, match="--precision bfloat16: cpu does not compute bfloat16 natively"):
        default_budget("bfloat16", "cpu")  # before any training, not an hour in


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_every_configuration_is_a_fit_that_the_training_cli_accepts(name):
    configuration = CONFIGURATIONS[name]
    command = ["fit", "--data-root", "d", "--category", "c", "--out", "o", "--preset", configuration.preset]
    args = build_parser().parse_args([*command, *configuration.fit_arguments])
    assert args.preset == configuration.preset
