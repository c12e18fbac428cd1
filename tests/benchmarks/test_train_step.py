"""Tests for benchmarks/train_step.py: what it reports, on a tiny batch."""

import json

import pytest

from benchmarks.train_step import main
from training.config import DEFAULT_MAX_STEPS


def test_each_format_reports_its_precisions_default_budget_and_what_its_steps_cost(tmp_path, capsys):
    out = tmp_path / "train_step.json"
    assert (
        main(["--batch-size", "2", "--rounds", "1", "--steps", "1", "--threads", "1", "--out", str(out)]) == 0
    )
    formats = json.loads(out.read_text())["formats"]
    assert {name: row["default_steps"] for name, row in formats.items()} == {
        "float32": DEFAULT_MAX_STEPS["float32"],
        "float32 channels-last": DEFAULT_MAX_STEPS["float32"],
        "bfloat16 channels-last": DEFAULT_MAX_STEPS["bfloat16"],
    }
    for row in formats.values():
        assert row["default_steps_min"] == pytest.approx(row["ms_per_step"] * row["default_steps"] / 60e3)
    table = capsys.readouterr().out
    assert f"| {DEFAULT_MAX_STEPS['bfloat16']}, " in table and "its default budget: steps, min" in table


def test_bad_rounds_are_one_line_and_exit_2(capsys):
    assert main(["--rounds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --rounds and --steps must be >= 1"
