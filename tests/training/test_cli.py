"""End to end through training/cli.py: synth → fit → calibrate → evaluate, and its one-line errors."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import models.precision
import training.config
import training.fit as fit_module
from models.checkpoint import load_checkpoint, read_metadata
from training.cli import main
from training.data import index_category, list_images, split_train_val
from training.evaluate import HEADLINE, evaluate

CATEGORY = "demo"


def _args(data, command: str, *rest: str) -> list[str]:
    """``command`` on the demo category under ``data``, on the CPU, with more flags."""
    return [command, "--data-root", str(data), "--category", CATEGORY, "--device", "cpu", *rest]


# One epoch at 24²: a checkpoint in seconds.
SMALL_FIT = ("--epochs", "1", "--input-size", "24", "--batch-size", "4", "--no-progress")


def _quiet(argv: list[str]) -> tuple[int, str]:
    """Run the CLI outside capsys (module fixtures): exit code and stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A synthetic category and a checkpoint fitted on it for one epoch at 24² (default preset)."""
    base = tmp_path_factory.mktemp("cli")
    data = base / "data"
    sizes = ["--image-size", "32", "--n-train", "8", "--n-test-good", "3", "--n-test-per-defect", "1"]
    code, _ = _quiet(["synth", "--out", str(data), "--category", CATEGORY, *sizes])
    assert code == 0
    checkpoint = base / "weights" / f"{CATEGORY}.safetensors"
    code, stdout = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT))
    assert code == 0
    return data, checkpoint, stdout


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_fit_writes_a_checkpoint_its_log_and_loss_plot(fitted):
    _, checkpoint, stdout = fitted
    summary = _last_json(stdout)
    assert summary["checkpoint"] == str(checkpoint)
    assert summary["epochs_run"] == 1 and summary["best_epoch"] == 1
    meta = read_metadata(checkpoint)
    assert meta["category"] == CATEGORY
    assert meta["preprocessing"]["input_size"] == 24 and meta["preprocessing"]["color_mode"] == "RGB"
    assert meta["model"]["cae"]["batch_norm"] is True  # the default preset
    assert meta["model"]["scoring"]["anomaly_map"] == "head+ssim+gms"
    assert set(meta["calibration"]["details"]["map_scales"]) == {"head", "ssim+gms", "texture", "quantile"}
    assert meta["calibration"]["image_threshold"] == summary["image_threshold"]
    training = meta["training"]
    assert training["preset"] == "default" and training["config"]["epochs"] == 1
    assert training["dataset"]["train_images"] + training["dataset"]["val_images"] == 8
    # The synthetic images share one shape, so the default's auto resize stretched them, and says why.
    assert meta["preprocessing"]["resize"] == "stretch"
    assert training["resize"] == {
        "mode": "stretch",
        "why": "the 8 training images share one shape (aspect ratio 1.00)",
    }
    log = json.loads(checkpoint.with_suffix(".log.json").read_text())
    assert len(log["history"]) == 1
    assert checkpoint.with_suffix(".loss.png").stat().st_size > 0


def test_no_sspcab_ablation_removes_every_sspcab_block(fitted, tmp_path):
    data, _, _ = fitted
    checkpoint = tmp_path / "ablation.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--no-sspcab"))
    assert code == 0
    model = read_metadata(checkpoint)["model"]
    assert model["cae"]["sspcab"] is False and model["head"]["sspcab"] is False
    names = load_checkpoint(checkpoint, "cpu").detector.state_dict()
    assert not [name for name in names if "sspcab" in name]


def test_padding_flag_reaches_both_networks(fitted, tmp_path):
    data, default, _ = fitted
    preset_padding = training.config.PRESETS["default"].detector.cae.padding
    default_model = read_metadata(default)["model"]
    assert default_model["cae"]["padding"] == default_model["head"]["padding"] == preset_padding
    other = "zeros" if preset_padding == "reflect" else "reflect"  # the flag must change something
    checkpoint = tmp_path / f"{other}.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--padding", other))
    assert code == 0
    model = read_metadata(checkpoint)["model"]
    assert model["cae"]["padding"] == other and model["head"]["padding"] == other
    modes = {
        m.padding_mode
        for m in load_checkpoint(checkpoint, "cpu").detector.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    }
    assert modes == {other}


def test_letterbox_fit_records_its_resize_and_its_checkpoint_evaluates(fitted, tmp_path, capsys):
    data, _, _ = fitted
    checkpoint = tmp_path / "letterbox.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--resize", "letterbox"))
    assert code == 0
    assert read_metadata(checkpoint)["preprocessing"]["resize"] == "letterbox"
    assert main(_args(data, "evaluate", "--checkpoint", str(checkpoint))) == 0
    assert 0 <= _last_json(capsys.readouterr().out)["pixel_auroc"] <= 1


def test_exposure_normalised_fit_records_the_training_images_level_and_evaluates(fitted, tmp_path, capsys):
    data, _, _ = fitted
    checkpoint = tmp_path / "exposure.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--normalize-exposure"))
    assert code == 0
    meta = read_metadata(checkpoint)
    train, _ = split_train_val(list_images(data / CATEGORY / "train" / "good"), 0.1, seed=0)
    expected = np.mean([np.asarray(Image.open(p).convert("RGB")).mean() / 255 for p in train])
    assert meta["model"]["exposure_mean"] == pytest.approx(expected, abs=1e-6)
    assert meta["preprocessing"]["exposure_mean"] == meta["model"]["exposure_mean"]  # what serving reads
    assert load_checkpoint(checkpoint).exposure_mean == meta["model"]["exposure_mean"]
    assert main(_args(data, "evaluate", "--checkpoint", str(checkpoint))) == 0
    assert 0 <= _last_json(capsys.readouterr().out)["pixel_auroc"] <= 1
    assert main(_args(data, "calibrate", "--checkpoint", str(checkpoint))) == 0  # keeps the level
    assert read_metadata(checkpoint)["model"]["exposure_mean"] == meta["model"]["exposure_mean"]


def test_a_region_of_interest_fit_inspects_that_box_only(fitted, tmp_path):
    data, _, _ = fitted
    checkpoint = tmp_path / "roi.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--roi", "0,0.25,0.5,1"))
    assert code == 0
    assert read_metadata(checkpoint)["preprocessing"]["roi"] == [0.0, 0.25, 0.5, 1.0]
    loaded = load_checkpoint(checkpoint)
    run = evaluate(loaded, index_category(data, CATEGORY), torch.device("cpu"))
    for amap in run.maps:  # 32 × 32 images: the box is columns 0–15, rows 8–31
        assert amap.shape == (32, 32) and amap[8:, :16].any()
        assert not amap[:8].any() and not amap[:, 16:].any()
    assert run.images.shape[-1] == 24  # the box, resized to the model input
    assert 0 <= run.metrics["pixel_auroc"] <= 1


def test_the_default_boxes_a_part_on_a_backdrop_and_inspects_a_texture_whole(fitted, tmp_path):
    from tests.training.test_part_box import part_on_backdrop, write_images

    _, textured, _ = fitted  # the synthetic category: a texture that fills the frame
    assert read_metadata(textured)["preprocessing"]["roi"] is None
    rng = np.random.default_rng(0)
    write_images(tmp_path / "data" / CATEGORY / "train" / "good", [part_on_backdrop(rng) for _ in range(8)])
    boxed, whole = tmp_path / "boxed.safetensors", tmp_path / "whole.safetensors"
    assert _quiet(_args(tmp_path / "data", "fit", "--out", str(boxed), *SMALL_FIT))[0] == 0
    roi = read_metadata(boxed)["preprocessing"]["roi"]  # the part: columns 32–99 of 128, rows 24–71 of 96
    assert roi == pytest.approx([32 / 128 - 0.05, 24 / 96 - 0.05, 100 / 128 + 0.05, 72 / 96 + 0.05], abs=0.03)
    code, _ = _quiet(_args(tmp_path / "data", "fit", "--out", str(whole), *SMALL_FIT, "--roi", "none"))
    assert code == 0 and read_metadata(whole)["preprocessing"]["roi"] is None


def test_roi_margin_widens_or_narrows_the_found_box(fitted, tmp_path):
    from tests.training.test_part_box import part_on_backdrop, write_images

    rng = np.random.default_rng(0)
    write_images(tmp_path / "data" / CATEGORY / "train" / "good", [part_on_backdrop(rng) for _ in range(8)])
    boxes = {}
    for margin in ("0.05", "0.02"):
        out = tmp_path / f"margin-{margin}.safetensors"
        argv = _args(
            tmp_path / "data", "fit", "--out", str(out), *SMALL_FIT, "--roi", "auto", "--roi-margin", margin
        )
        assert _quiet(argv)[0] == 0
        boxes[margin] = read_metadata(out)["preprocessing"]["roi"]
    # The same part, 3 % of the frame's side closer on every side.
    assert boxes["0.02"] == pytest.approx(
        [boxes["0.05"][0] + 0.03, boxes["0.05"][1] + 0.03, boxes["0.05"][2] - 0.03, boxes["0.05"][3] - 0.03],
        abs=1e-4,
    )


@pytest.mark.parametrize(
    ("roi", "fragment"),
    [("0.5,0,0.2,1", "0 <= left < right <= 1"), ("0,0,1", "is 4 numbers"), ("a,0,1,1", "a,0,1,1")],
)
def test_a_bad_region_of_interest_is_a_one_line_error(fitted, tmp_path, capsys, roi, fragment):
    data, _, _ = fitted
    out = tmp_path / "bad.safetensors"
    code = main(_args(data, "fit", "--out", str(out), *SMALL_FIT, "--roi", roi))
    _assert_one_error_line(capsys, code, "--roi", fragment)
    assert not out.exists()


def test_image_size_fit_trains_on_crops_and_scores_the_larger_image(fitted, tmp_path, capsys):
    data, _, _ = fitted
    checkpoint = tmp_path / "hires.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--image-size", "48"))
    assert code == 0
    meta = read_metadata(checkpoint)
    assert meta["model"]["cae"]["input_size"] == 24 and meta["model"]["image_size"] == 48
    assert meta["preprocessing"]["input_size"] == 48  # what the service resizes images to
    loaded = load_checkpoint(checkpoint)
    assert loaded.input_size == 48
    assert loaded.detector(torch.rand(2, 3, 48, 48)).anomaly_map.shape == (2, 48, 48)
    assert main(_args(data, "evaluate", "--checkpoint", str(checkpoint))) == 0
    assert 0 <= _last_json(capsys.readouterr().out)["pixel_auroc"] <= 1


def test_snapshots_are_calibrated_checkpoints_beside_the_kept_one_out_of_the_services_way(
    fitted, tmp_path, capsys
):
    data, _, _ = fitted
    checkpoint = tmp_path / "weights" / "demo.safetensors"
    small = ("--input-size", "24", "--batch-size", "4", "--no-progress")  # 7 images: 2 steps an epoch
    flags = ("--epochs", "2", "--snapshot-every", "2", *small)
    assert main(_args(data, "fit", "--out", str(checkpoint), *flags)) == 0
    out, err = capsys.readouterr()
    summary = _last_json(out)
    folder = tmp_path / "weights" / "demo-snapshots"
    paths = [folder / "step2.safetensors", folder / "step4.safetensors"]
    assert summary["snapshots"] == [str(p) for p in paths]
    assert read_metadata(checkpoint)["training"]["snapshots"] == summary["snapshots"]
    assert sorted((tmp_path / "weights").glob("*.safetensors")) == [checkpoint]  # one category served
    assert "snapshot of epoch 2 (4 steps, validation loss" in err
    for epoch, path in enumerate(paths, start=1):
        training = read_metadata(path)["training"]
        assert training["snapshot"]["epoch"] == epoch and training["snapshot"]["steps"] == 2 * epoch
        assert "snapshots" not in training
        assert bool(load_checkpoint(path).detector.texture.filled)
    # The best epoch's snapshot holds the kept weights, so it calibrates to the same thresholds.
    best = paths[summary["best_epoch"] - 1]
    for name in ("image_threshold", "pixel_threshold"):
        assert read_metadata(best)["calibration"][name] == pytest.approx(summary[name], rel=1e-6)
    assert main(_args(data, "evaluate", "--checkpoint", str(paths[0]))) == 0


def test_early_stopping_says_so_and_records_it(fitted, tmp_path, capsys, monkeypatch):
    data, _, _ = fitted
    # Validation worsens after the first epoch: patience 2 stops the 5 planned epochs after 3.
    scripted = iter([0.1, 0.2, 0.3, 0.4, 0.5])
    monkeypatch.setattr(fit_module, "validate", lambda *a: (next(scripted), 0.0, 1.0, 1.0, 0.0))
    checkpoint = tmp_path / "stopped.safetensors"
    flags = ["--epochs", "5", "--patience", "2", "--input-size", "24", "--batch-size", "4", "--no-progress"]
    assert main(_args(data, "fit", "--out", str(checkpoint), *flags)) == 0
    out, err = capsys.readouterr()
    assert "stopped early at epoch 3 of 5" in err and "best epoch's (1) weights" in err
    summary = _last_json(out)
    assert summary["stopped_early"] is True
    assert (summary["epochs_planned"], summary["epochs_run"], summary["best_epoch"]) == (5, 3, 1)
    training = read_metadata(checkpoint)["training"]
    assert training["stopped_early"] is True
    # --patience is taken exactly: the default preset's share of the planned epochs does not raise it.
    assert (training["config"]["patience"], training["config"]["patience_fraction"]) == (2, 0.0)


def test_a_run_that_trains_its_whole_budget_is_not_marked_stopped_early(fitted):
    _, _, stdout = fitted
    assert _last_json(stdout)["stopped_early"] is False


def test_on_collapse_reaches_the_training_config(fitted, tmp_path):
    data, _, _ = fitted
    checkpoint = tmp_path / "starting.safetensors"
    small = ["--epochs", "1", "--input-size", "18", "--batch-size", "4", "--no-progress"]
    code, _ = _quiet(
        _args(data, "fit", "--out", str(checkpoint), "--preset", "starting", "--on-collapse", "warn", *small)
    )
    assert code == 0
    assert read_metadata(checkpoint)["training"]["config"]["on_collapse"] == "warn"


def test_ema_decay_reaches_the_training_config(fitted, tmp_path):
    data, _, _ = fitted
    checkpoint = tmp_path / "averaged.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--ema-decay", "0.99"))
    assert code == 0
    assert read_metadata(checkpoint)["training"]["config"]["ema_decay"] == 0.99


def test_precision_and_its_budget_reach_the_config_and_the_checkpoint_says_which_trained_it(
    fitted, tmp_path, monkeypatch
):
    data, original, _ = fitted
    default = read_metadata(original)["training"]
    assert (default["config"]["precision"], default["precision"]) == ("auto", "float32")  # on the CPU
    assert default["config"]["max_steps"] == 1200  # float32's default budget, recorded
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: True)
    checkpoint = tmp_path / "bfloat16.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--precision", "bfloat16"))
    assert code == 0
    training = read_metadata(checkpoint)["training"]
    assert (training["config"]["precision"], training["precision"]) == ("bfloat16", "bfloat16")
    assert training["config"]["max_steps"] == 4800  # bfloat16's own default budget


def test_fit_says_what_it_trains_for_and_why(fitted, tmp_path, monkeypatch):
    data, _, _ = fitted
    monkeypatch.setitem(training.config.DEFAULT_MAX_STEPS, "float32", 2)  # default budgets of seconds
    monkeypatch.setitem(training.config.DEFAULT_MAX_STEPS, "bfloat16", 4)
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: True)
    tiny = ("--input-size", "24", "--batch-size", "4", "--no-progress")
    runs = {  # flags: the budget line fit prints, and the steps the checkpoint records
        (): ("2 steps (float32's default; --max-steps sets it)", 2),
        ("--precision", "bfloat16"): ("4 steps (bfloat16's default; --max-steps sets it)", 4),
        ("--precision", "bfloat16", "--max-steps", "3"): ("3 steps (--max-steps)", 3),
        ("--epochs", "1"): ("1 epoch (--epochs)", 2),
    }
    for flags, (line, steps) in runs.items():
        out, err = tmp_path / "budget.safetensors", io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert main(_args(data, "fit", "--out", str(out), *tiny, *flags)) == 0
        assert f"  budget {line}\n" in err.getvalue()
        assert read_metadata(out)["training"]["config"]["max_steps"] == steps


def test_bfloat16_on_a_cpu_that_would_emulate_it_is_one_line_and_no_checkpoint(fitted, tmp_path, monkeypatch):
    data, _, _ = fitted
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: False)
    checkpoint = tmp_path / "emulated.safetensors"
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(_args(data, "fit", "--out", str(checkpoint), *SMALL_FIT, "--precision", "bfloat16"))
    assert code != 0
    assert "--precision bfloat16: cpu does not compute bfloat16 natively" in stderr.getvalue()
    assert not checkpoint.exists()


def test_evaluate_prints_one_json_line_and_writes_the_report(fitted, tmp_path, capsys):
    data, original, _ = fitted
    checkpoint = shutil.copy(original, tmp_path / "demo.safetensors")
    report = tmp_path / "report"
    code = main(
        _args(data, "evaluate", "--checkpoint", str(checkpoint), "--report-dir", str(report), "--record")
    )
    stdout = capsys.readouterr().out
    assert code == 0
    metrics = _last_json(stdout)
    for key in HEADLINE:
        assert 0.0 <= metrics[key] <= 1.0
    assert {p.name for p in report.iterdir()} >= {
        "metrics.json",
        "report.md",
        "roc.png",
        "pro.png",
        "examples.png",
    }
    evaluation = read_metadata(checkpoint)["evaluation"]  # --record
    assert evaluation["image_auroc"] == metrics["image_auroc"] and evaluation["dataset"] == CATEGORY


def test_evaluate_in_bfloat16_scores_as_a_bfloat16_service_and_says_so(fitted, tmp_path, capsys, monkeypatch):
    data, original, _ = fitted
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: True)
    report = tmp_path / "report"
    runs = {}
    for precision in ("float32", "bfloat16"):
        argv = [
            "--checkpoint",
            str(original),
            "--report-dir",
            str(report / precision),
            "--precision",
            precision,
        ]
        assert main(_args(data, "evaluate", *argv)) == 0
        runs[precision] = json.loads((report / precision / "metrics.json").read_text())
    capsys.readouterr()
    assert runs["bfloat16"]["precision"] == "bfloat16" and runs["float32"]["precision"] == "float32"
    assert "networks in bfloat16" in (report / "bfloat16" / "report.md").read_text()
    index, cpu = index_category(data, CATEGORY), torch.device("cpu")
    full, half = (evaluate(load_checkpoint(original), index, cpu, p).scores for p in ("float32", "bfloat16"))
    assert not np.array_equal(half, full)  # the networks ran in bfloat16 ...
    np.testing.assert_allclose(half, full, rtol=0.05)  # ... and their scores stay close
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: False)
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(_args(data, "evaluate", "--checkpoint", str(original), "--precision", "bfloat16"))
    assert code == 2
    (line,) = stderr.getvalue().splitlines()
    assert line.startswith("error: --precision bfloat16: cpu does not compute bfloat16 natively")


def test_calibrate_updates_the_thresholds_in_place(fitted, tmp_path, capsys):
    data, original, _ = fitted
    checkpoint = shutil.copy(original, tmp_path / "demo.safetensors")
    before = load_checkpoint(checkpoint)
    code = main(_args(data, "calibrate", "--checkpoint", str(checkpoint), "--image-quantile", "0.5"))
    assert code == 0
    printed = _last_json(capsys.readouterr().out)
    after = load_checkpoint(checkpoint)
    assert after.calibration.image_threshold == printed["image_threshold"]
    assert after.calibration.image_threshold < before.calibration.image_threshold  # median < 0.99 quantile
    assert after.calibration.details["image_quantile"] == 0.5
    assert after.metadata["training"] == before.metadata["training"]
    for key, tensor in before.detector.state_dict().items():
        assert tensor.equal(after.detector.state_dict()[key])


def test_calibrate_in_bfloat16_records_it_and_fit_calibrates_in_float32(
    fitted, tmp_path, capsys, monkeypatch
):
    data, original, _ = fitted
    assert load_checkpoint(original).calibration.details["precision"] == "float32"
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: True)
    checkpoint = tmp_path / "bfloat16.safetensors"
    argv = ["--checkpoint", str(original), "--out", str(checkpoint), "--precision", "bfloat16"]
    assert main(_args(data, "calibrate", *argv)) == 0
    printed = _last_json(capsys.readouterr().out)
    assert printed["details"]["precision"] == "bfloat16"
    assert load_checkpoint(checkpoint).calibration.details["precision"] == "bfloat16"
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: False)
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(_args(data, "calibrate", *argv))
    assert code == 2
    (line,) = stderr.getvalue().splitlines()
    assert line.startswith("error: --precision bfloat16: cpu does not compute bfloat16 natively")


def test_f1_optimal_calibration_is_recorded_and_reaches_f1_max_at_its_thresholds(fitted, tmp_path, capsys):
    data, original, _ = fitted
    optimistic = tmp_path / "optimistic.safetensors"
    code = main(
        _args(data, "calibrate", "--checkpoint", str(original), "--out", str(optimistic), "--f1-optimal")
    )
    assert code == 0
    assert _last_json(capsys.readouterr().out)["method"].startswith("f1-optimal (optimistic")
    assert read_metadata(original)["calibration"]["method"] == "normal-quantile"  # --out leaves it alone
    report = tmp_path / "report"
    assert main(_args(data, "evaluate", "--checkpoint", str(optimistic), "--report-dir", str(report))) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["thresholds"]["method"].startswith("f1-optimal (optimistic")
    assert metrics["image_f1_at_threshold"] == pytest.approx(metrics["image_f1_max"])
    assert metrics["pixel_f1_at_threshold"] == pytest.approx(metrics["pixel_f1_max"])


def test_calibrate_with_another_map_rescores_the_same_weights(fitted, tmp_path, capsys):
    data, original, _ = fitted
    head_only, error_only = tmp_path / "head.safetensors", tmp_path / "error.safetensors"
    for out, kind in ((head_only, "head"), (error_only, "ssim+gms")):
        code = main(
            _args(data, "calibrate", "--checkpoint", str(original), "--out", str(out), "--anomaly-map", kind)
        )
        assert code == 0
        assert read_metadata(out)["model"]["scoring"]["anomaly_map"] == kind
        assert read_metadata(out)["evaluation"] is None  # metrics of another map do not carry over
    fused = load_checkpoint(original).detector
    assert load_checkpoint(head_only).detector.head is not None
    cae_alone = load_checkpoint(error_only).detector
    assert cae_alone.head is None
    for key, tensor in fused.cae.state_dict().items():
        assert tensor.equal(cae_alone.cae.state_dict()[key])
    capsys.readouterr()
    code = main(_args(data, "calibrate", "--checkpoint", str(error_only), "--anomaly-map", "head"))
    _assert_one_error_line(capsys, code, "needs a discriminative head")


def test_calibrate_drops_or_rebuilds_the_texture_memory(fitted, tmp_path, capsys):
    data, original, _ = fitted
    assert load_checkpoint(original).detector.texture is not None  # the default preset has one
    without, rebuilt = tmp_path / "without.safetensors", tmp_path / "rebuilt.safetensors"
    assert (
        main(
            _args(data, "calibrate", "--checkpoint", str(original), "--out", str(without), "--texture", "off")
        )
        == 0
    )
    meta = read_metadata(without)
    assert meta["model"]["texture"] is None and meta["evaluation"] is None
    assert set(meta["calibration"]["details"]["map_scales"]) == {"head", "ssim+gms", "quantile"}
    assert load_checkpoint(without).detector.map_scales.numel() == 2
    assert (
        main(_args(data, "calibrate", "--checkpoint", str(without), "--out", str(rebuilt), "--texture", "on"))
        == 0
    )
    fitted_memory, rebuilt_memory = (
        load_checkpoint(original).detector.texture,
        load_checkpoint(rebuilt).detector.texture,
    )
    assert bool(rebuilt_memory.filled)
    # the same training images and seed as fit: the same memory
    assert torch.equal(rebuilt_memory.memory, fitted_memory.memory)
    error_only = tmp_path / "error.safetensors"
    assert (
        main(
            _args(
                data,
                "calibrate",
                "--checkpoint",
                str(original),
                "--out",
                str(error_only),
                "--anomaly-map",
                "ssim+gms",
            )
        )
        == 0
    )
    capsys.readouterr()
    code = main(_args(data, "calibrate", "--checkpoint", str(error_only), "--texture", "on"))
    _assert_one_error_line(capsys, code, "--texture", "'ssim+gms'")


def test_calibrate_sets_the_test_time_flips_on_the_same_weights(fitted, tmp_path, capsys):
    data, original, _ = fitted
    assert load_checkpoint(original).detector.config.scoring.test_time_flips == ("h", "v", "hv")
    plain = tmp_path / "plain.safetensors"
    flags = ("--checkpoint", str(original), "--out", str(plain), "--test-time-flips", "none")
    assert main(_args(data, "calibrate", *flags)) == 0
    meta = read_metadata(plain)
    assert meta["model"]["scoring"]["test_time_flips"] == [] and meta["evaluation"] is None
    assert meta["calibration"] != read_metadata(original)["calibration"]  # recalibrated for its map
    before, after = load_checkpoint(original).detector, load_checkpoint(plain).detector
    for key, tensor in before.state_dict().items():
        if key != "map_scales":
            assert tensor.equal(after.state_dict()[key]), key
    capsys.readouterr()
    code = main(_args(data, "calibrate", "--checkpoint", str(plain), "--test-time-flips", "h,d"))
    _assert_one_error_line(capsys, code, "--test-time-flips", "'h,d'")


def test_no_texture_ablation_fits_without_a_memory(fitted, tmp_path):
    data, _, _ = fitted
    out = tmp_path / "plain.safetensors"
    code, _ = _quiet(_args(data, "fit", "--out", str(out), *SMALL_FIT, "--no-texture"))
    assert code == 0
    assert read_metadata(out)["model"]["texture"] is None


def _assert_one_error_line(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_missing_data_root(tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    code = main(
        ["fit", "--data-root", str(nowhere), "--category", CATEGORY, "--out", str(tmp_path / "x.safetensors")]
    )
    _assert_one_error_line(capsys, code, str(nowhere))


def test_unknown_category(fitted, capsys):
    data, checkpoint, _ = fitted
    code = main(
        ["evaluate", "--data-root", str(data), "--category", "gadget", "--checkpoint", str(checkpoint)]
    )
    _assert_one_error_line(capsys, code, "gadget", f"available: {CATEGORY}")


def test_defect_image_without_mask(fitted, tmp_path, capsys):
    data, checkpoint, _ = fitted
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    mask = copy / CATEGORY / "ground_truth" / "crack" / "000_mask.png"
    mask.unlink()
    code = main(_args(copy, "evaluate", "--checkpoint", str(checkpoint)))
    _assert_one_error_line(capsys, code, "has no mask", str(mask))


def test_exposure_normalisation_of_black_training_images_is_a_one_line_error(fitted, tmp_path, capsys):
    data, _, _ = fitted
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for path in list_images(copy / CATEGORY / "train" / "good"):
        Image.new("RGB", Image.open(path).size).save(path)  # a capped lens: every frame black
    out = tmp_path / "never.safetensors"
    code = main(_args(copy, "fit", "--out", str(out), *SMALL_FIT, "--normalize-exposure"))
    _assert_one_error_line(capsys, code, "--normalize-exposure", "mean intensity is 0")
    assert not out.exists()


def test_corrupt_checkpoint(fitted, tmp_path, capsys):
    data, original, _ = fitted
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(original.read_bytes()[:1000])
    code = main(_args(data, "evaluate", "--checkpoint", str(corrupt)))
    _assert_one_error_line(capsys, code, str(corrupt), "not a readable safetensors file")


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--input-size", "25"], ("input_size", "try 24")),
        (["--image-quantile", "1.5"], ("--image-quantile",)),  # refused before training, not after
        (["--epochs", "0"], ("--epochs",)),
        (["--snapshot-every", "-5"], ("--snapshot-every", ">= 0")),
        (["--input-size", "24", "--image-size", "12"], ("--image-size 12", "at least", "24")),
        (["--input-size", "24", "--image-size", "50"], ("--image-size 50", "multiple of 6", "try 48")),
        (["--roi", "none", "--roi-margin", "0.02"], ("--roi-margin 0.02", "only --roi auto", "--roi none")),
        (["--preset", "starting", "--roi-margin", "0.02"], ("--roi-margin", "preset starting")),
        (["--roi-margin", "-0.01"], ("--roi-margin -0.01", "between 0 and 0.25")),
        (["--roi-margin", "nan"], ("--roi-margin nan", "between 0 and 0.25")),
    ],
)
def test_invalid_fit_settings_fail_before_training(fitted, tmp_path, capsys, flags, fragments):
    data, _, _ = fitted
    out = tmp_path / "never.safetensors"
    code = main(_args(data, "fit", "--out", str(out), "--no-progress", *flags))
    _assert_one_error_line(capsys, code, *fragments)
    assert not out.exists()
