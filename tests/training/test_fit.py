"""Tests for training/fit.py: a tiny fit, the best epoch, reproducibility, collapse detection."""

import math
from dataclasses import astuple, replace
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

import training.fit as fit_module
from models.detector import AnomalyDetector
from tests.conftest import tiny_config
from training.config import DEFAULT_MAX_STEPS, TrainConfig
from training.fit import (
    TrainingCollapsed,
    augment,
    fit,
    mixed_precision,
    random_crops,
    resolve_device,
    validate,
)

CPU = torch.device("cpu")


def _textures(n: int, seed: int, size: int = 24) -> torch.Tensor:
    """(n, 3, size, size) smooth random textures in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _detector(seed: int = 0) -> AnomalyDetector:
    torch.manual_seed(seed)
    return AnomalyDetector(tiny_config())


def _config(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, learning_rate=1e-2, patience=0, augment="flip")
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    images = _textures(12, seed=1)
    return images[:9], images[9:]


def test_tiny_fit_records_history_and_keeps_the_best_epoch(data):
    train, val = data
    config = _config()
    result = fit(_detector(), train, val, config, CPU, progress=False)
    assert [r.epoch for r in result.history] == [1, 2, 3]
    for record in result.history:
        assert all(math.isfinite(v) for v in astuple(record))
        assert record.mean_image_mse > 0
    val_losses = [r.val_loss for r in result.history]
    assert result.best_epoch == 1 + val_losses.index(min(val_losses))
    assert not result.stopped_early
    assert not result.detector.training
    # the weights kept are those the best validation loss was measured with
    mean_image = train.mean(dim=0, keepdim=True)
    val_loss = validate(result.detector, val, mean_image, config)[0]
    assert val_loss == pytest.approx(min(val_losses), rel=1e-6)


def test_best_epoch_weights_are_restored_when_a_later_epoch_is_worse(data, monkeypatch):
    train, val = data
    real_validate = validate
    scripted = iter([0.5, 0.2, 0.4])  # epoch 2 is the best

    def scripted_validate(*args):
        _, *rest = real_validate(*args)
        return next(scripted), *rest

    # a constant rate (the default, said explicitly): cosines over 3 and over 2 epochs would differ
    monkeypatch.setattr(fit_module, "validate", scripted_validate)
    three = fit(_detector(), train, val, _config(epochs=3, lr_schedule="constant"), CPU, progress=False)
    monkeypatch.setattr(fit_module, "validate", real_validate)
    two = fit(_detector(), train, val, _config(epochs=2, lr_schedule="constant"), CPU, progress=False)
    assert three.best_epoch == 2
    for (name, a), (_, b) in zip(
        three.detector.state_dict().items(), two.detector.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_with_a_weight_average_the_average_is_validated_and_kept(data, monkeypatch):
    train, val = data
    real_validate = validate
    validated = []

    def recording_validate(detector, *rest):
        validated.append(detector)
        return real_validate(detector, *rest)

    real_refresh = fit_module.refresh_batch_norm
    refreshed = []

    def recording_refresh(model, forward):
        refreshed.append(model)
        real_refresh(model, forward)

    monkeypatch.setattr(fit_module, "validate", recording_validate)
    monkeypatch.setattr(fit_module, "refresh_batch_norm", recording_refresh)
    averaged = fit(_detector(), train, val, _config(ema_decay=0.9), CPU, progress=False)
    live = fit(_detector(), train, val, _config(), CPU, progress=False)
    # The average is a separate model: validation never saw the detector that trains.
    assert all(d is validated[0] for d in validated[:3]) and validated[0] is not averaged.detector
    assert validated[3] is live.detector
    # Before each validation the average's BatchNorm statistics are measured for its own weights.
    assert refreshed == validated[:3]
    assert averaged.best_epoch == live.best_epoch == 3  # validation improves every epoch here
    # Same seed, same steps: only what is kept differs, the average, and it is what was validated.
    assert any(
        not torch.equal(a, b)
        for a, b in zip(averaged.detector.parameters(), live.detector.parameters(), strict=True)
    )
    mean_image = train.mean(dim=0, keepdim=True)
    val_mse = real_validate(averaged.detector, val, mean_image, _config())[1]
    assert val_mse == pytest.approx(averaged.history[-1].val_mse, rel=1e-6)


def test_early_stopping_after_patience(data, monkeypatch):
    train, val = data
    scripted = iter([0.1, 0.2, 0.3, 0.4, 0.5])
    monkeypatch.setattr(fit_module, "validate", lambda *a: (next(scripted), 0.0, 1.0, 1.0, 0.0))
    result = fit(_detector(), train, val, _config(epochs=5, patience=2), CPU, progress=False)
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1


def test_patience_grows_with_the_planned_epochs(data, monkeypatch):
    train, val = data
    # Validation worsens after the first epoch: a quarter of 12 epochs (3) outlasts patience 2.
    scripted = iter([0.1 * e for e in range(1, 13)])
    monkeypatch.setattr(fit_module, "validate", lambda *a: (next(scripted), 0.0, 1.0, 1.0, 0.0))
    config = _config(epochs=12, patience=2, patience_fraction=0.25)
    result = fit(_detector(), train, val, config, CPU, progress=False)
    assert result.patience == 3
    assert result.stopped_early and len(result.history) == 4


def test_patience_is_the_larger_of_its_epochs_and_its_share_of_the_run_and_off_stays_off():
    config = TrainConfig(patience=20, patience_fraction=0.25)
    assert config.patience_for(40) == 20  # a quarter (10) is less
    assert config.patience_for(86) == 22  # the default budget on tire: ceil(21.5)
    assert config.patience_for(343) == 86
    assert TrainConfig(patience=0, patience_fraction=0.25).patience_for(343) == 0
    assert TrainConfig(patience=20).patience_for(343) == 20


def test_the_same_seed_gives_identical_weights(data):
    train, val = data
    config = _config(epochs=2, augment="flip+rot90", seed=3)
    a = fit(_detector(), train, val, config, CPU, progress=False).detector.state_dict()
    b = fit(_detector(), train, val, config, CPU, progress=False).detector.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = fit(_detector(), train, val, _config(epochs=2, seed=4), CPU, progress=False).detector.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _one_texture_with_noise(n: int, seed: int) -> torch.Tensor:
    """Nearly identical images: the mean image reconstructs them almost perfectly."""
    generator = torch.Generator().manual_seed(seed)
    base = _textures(1, seed=0)
    return (base + 0.01 * torch.randn(n, 3, 24, 24, generator=generator)).clamp(0, 1)


def test_a_model_no_better_than_the_mean_image_is_reported_as_collapsed():
    train, val = _one_texture_with_noise(8, 1), _one_texture_with_noise(4, 2)
    config = _config(epochs=3, learning_rate=1e-9, collapse_warmup=0, collapse_patience=1)
    with pytest.raises(TrainingCollapsed, match="constant output at epoch 1"):
        fit(_detector(), train, val, config, CPU, progress=False)


def test_on_collapse_warn_trains_a_collapsed_model_on_and_records_the_epoch(capsys):
    train, val = _one_texture_with_noise(8, 1), _one_texture_with_noise(4, 2)
    config = _config(epochs=3, learning_rate=1e-9, collapse_warmup=0, collapse_patience=1, on_collapse="warn")
    result = fit(_detector(), train, val, config, CPU, progress=False)
    assert len(result.history) == 3  # trained on
    assert result.reconstruction_collapsed_at == 1
    assert "--on-collapse warn" in capsys.readouterr().err


def test_with_a_head_a_collapsed_reconstruction_is_reported_not_fatal():
    from models.detector import DetectorConfig
    from models.head import HeadConfig
    from models.scoring import ScoringConfig

    torch.manual_seed(0)
    config = DetectorConfig(tiny_config().cae, ScoringConfig(anomaly_map="head"), HeadConfig(widths=(4, 8)))
    detector = AnomalyDetector(config)
    train, val = _one_texture_with_noise(8, 1), _one_texture_with_noise(4, 2)
    config = _config(epochs=3, learning_rate=1e-9, collapse_warmup=0, collapse_patience=1)
    result = fit(detector, train, val, config, CPU, progress=False)
    assert len(result.history) == 3  # trained on
    assert result.reconstruction_collapsed_at == 1


def test_collapse_waits_for_warmup_and_patience():
    train, val = _one_texture_with_noise(8, 1), _one_texture_with_noise(4, 2)
    patient = _config(epochs=2, learning_rate=1e-9, collapse_warmup=0, collapse_patience=3)
    result = fit(_detector(), train, val, patient, CPU, progress=False)
    assert all(r.val_mse >= 0.9 * r.mean_image_mse for r in result.history)  # collapsed, not yet stopped
    warming = _config(epochs=2, learning_rate=1e-9, collapse_warmup=2, collapse_patience=1)
    assert len(fit(_detector(), train, val, warming, CPU, progress=False).history) == 2


def test_augment_flips_keep_the_pixels_and_none_is_identity():
    batch = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    generator = torch.Generator().manual_seed(0)
    assert augment(batch, "none", generator) is batch
    for mode in ("flip", "flip+rot90"):
        out = augment(batch, mode, generator)
        assert out.shape == batch.shape
        for a, b in zip(out, batch, strict=True):
            assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    assert torch.equal(batch, torch.arange(18, dtype=torch.float32).reshape(2, 1, 3, 3))  # input untouched


def test_random_crops_are_windows_of_each_image_and_a_model_sized_batch_is_untouched():
    batch = torch.rand(5, 3, 12, 12)
    generator = torch.Generator().manual_seed(0)
    assert random_crops(batch, 12, generator) is batch
    crops = random_crops(batch, 6, generator)
    assert crops.shape == (5, 3, 6, 6)
    for crop, image in zip(crops, batch, strict=True):
        windows = image.unfold(1, 6, 1).unfold(2, 6, 1)  # (3, 7, 7, 6, 6): every 6×6 window
        assert any(torch.equal(crop, windows[:, r, c]) for r in range(7) for c in range(7))
    corners = {tuple(random_crops(batch[:1], 6, generator)[0, 0, 0, :2].tolist()) for _ in range(20)}
    assert len(corners) > 1  # the window moves from draw to draw


def test_a_detector_with_a_larger_image_size_trains_on_crops_and_validates_whole_images(monkeypatch):
    torch.manual_seed(0)
    detector = AnomalyDetector(replace(tiny_config(), image_size=48))
    train, val = _textures(8, seed=1, size=48), _textures(4, seed=2, size=48)
    seen = []
    forward_with_loss = detector.cae.forward_with_loss
    monkeypatch.setattr(
        detector.cae, "forward_with_loss", lambda x: seen.append(x.shape[-1]) or forward_with_loss(x)
    )
    result = fit(detector, train, val, _config(epochs=2), CPU, progress=False)
    assert set(seen) == {24}  # every training step saw CAE-sized crops
    assert all(math.isfinite(r.val_loss) for r in result.history)
    assert detector(val).anomaly_map.shape == (4, 48, 48)


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda"):
            resolve_device("cuda")


def _seen_by_the_first_convolution(detector: AnomalyDetector) -> list[tuple[torch.dtype, bool]]:
    """Per forward pass of the CAE's first convolution: its output's dtype, and whether its weight
    was in channels-last layout."""
    seen: list[tuple[torch.dtype, bool]] = []
    first = next(m for m in detector.cae.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(
        lambda m, _i, out: seen.append((out.dtype, m.weight.is_contiguous(memory_format=torch.channels_last)))
    )
    return seen


@pytest.mark.parametrize(
    ("precision", "expected"), [("bfloat16", "bfloat16"), ("auto", "float32"), ("float32", "float32")]
)
def test_on_the_cpu_training_runs_in_bfloat16_only_when_asked_and_validates_in_float32(
    data, monkeypatch, precision, expected
):
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: True)
    train, val = data
    detector = _detector()
    seen = _seen_by_the_first_convolution(detector)
    result = fit(detector, train, val, _config(epochs=1, precision=precision), CPU, progress=False)
    assert result.precision == expected
    steps = math.ceil(train.shape[0] / 4)
    mixed = expected == "bfloat16"
    # Training steps: bfloat16 in channels-last; float32 in the default layout, whose rounding the
    # published float32 figures were measured with.
    assert set(seen[:steps]) == {(getattr(torch, expected), mixed)}
    assert {dtype for dtype, _ in seen[steps:]} == {torch.float32}  # validation judges in float32
    assert all(math.isfinite(r.val_loss) for r in result.history)
    assert all(p.dtype == torch.float32 for p in result.detector.parameters())  # the weights stay float32
    assert all(p.is_contiguous() for p in result.detector.parameters())  # channels-last is undone


def test_auto_precision_is_bfloat16_on_cuda_only_and_bfloat16_is_refused_where_it_is_emulated(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: True)  # native everywhere
    assert mixed_precision("auto", cuda) and not mixed_precision("auto", CPU)
    assert not mixed_precision("float32", cuda) and not mixed_precision("float32", CPU)
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: device.type == "cuda")
    assert mixed_precision("bfloat16", cuda)
    with pytest.raises(ValueError, match="--precision bfloat16: cpu does not compute bfloat16 natively"):
        mixed_precision("bfloat16", CPU)
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: False)  # a pre-Ampere GPU
    assert not mixed_precision("auto", cuda)  # auto trains it in float32
    with pytest.raises(ValueError, match="--precision bfloat16: cuda does not compute bfloat16 natively"):
        mixed_precision("bfloat16", cuda)


def test_snapshots_keep_the_epochs_that_complete_each_multiple_of_the_steps(data, monkeypatch):
    train, val = data  # 9 images in batches of 4: 3 steps an epoch, 15 in 5 epochs
    scripted = iter([0.5, 0.4, 0.3, 0.1, 0.2])  # epoch 4 is the best
    monkeypatch.setattr(fit_module, "validate", lambda *a: (next(scripted), 0.0, 1.0, 1.0, 0.0))
    result = fit(_detector(), train, val, _config(epochs=5, snapshot_every=5), CPU, progress=False)
    # steps 5, 10 and 15 are completed by epochs 2 (6 steps), 4 (12) and 5 (15)
    assert [(s.epoch, s.steps, s.val_loss) for s in result.snapshots] == [
        (2, 6, 0.4),
        (4, 12, 0.1),
        (5, 15, 0.2),
    ]
    assert result.best_epoch == 4
    kept = result.detector.state_dict()
    assert all(torch.equal(kept[name], value) for name, value in result.snapshots[1].state.items())
    assert any(not torch.equal(kept[name], value) for name, value in result.snapshots[2].state.items())


def test_without_snapshot_every_no_snapshot_is_kept(data):
    train, val = data
    assert fit(_detector(), train, val, _config(epochs=1), CPU, progress=False).snapshots == []


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("epochs", 0, "--epochs"),
        ("batch_size", 0, "--batch-size"),
        ("collapse_patience", 0, "--collapse-patience"),
        ("learning_rate", 0.0, "--learning-rate"),
        ("mse_loss_weight", -1.0, "--mse-loss-weight"),
        ("precision", "float16", "--precision"),
        ("ssim_loss_weight", -0.5, "--ssim-loss-weight"),
        ("sspcab_loss_weight", -0.1, "--sspcab-loss-weight"),
        ("patience", -1, "--patience"),
        ("snapshot_every", -1, "--snapshot-every"),
        ("patience_fraction", 1.5, "--patience-fraction"),
        ("ema_decay", 1.0, "--ema-decay"),
        ("augment", "rotate", "--augment"),
        ("on_collapse", "ignore", "--on-collapse"),
        ("val_fraction", 1.0, "--val-fraction"),
        ("image_quantile", 1.5, "--image-quantile"),
        ("pixel_quantile", 0.0, "--pixel-quantile"),
        ("anomaly_probability", 1.5, "--anomaly-probability"),
        ("seamless_probability", -0.1, "--seamless-probability"),
    ],
)
def test_train_config_validation_names_the_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        TrainConfig(**{field: value})


def test_train_config_defaults_are_valid_and_serialisable():
    config = TrainConfig()
    assert config.to_dict()["sspcab_loss_weight"] == 0.1
    assert TrainConfig(**config.to_dict()) == config


def test_mean_level_error_with_input_dependent_output_is_not_collapse():
    from training.fit import EpochRecord, _collapsed

    config = TrainConfig(collapse_warmup=0)
    at_mean = dict(epoch=5, train_loss=1.0, val_loss=1.0, val_mse=0.01, mean_image_mse=0.01, seconds=1.0)
    assert _collapsed(EpochRecord(**at_mean, diversity=0.01), config)
    # A stationary texture: the mean predicts it about as well, but the output still follows the input.
    assert not _collapsed(EpochRecord(**at_mean, diversity=0.5), config)
    assert not _collapsed(EpochRecord(**{**at_mean, "val_mse": 0.002}, diversity=0.01), config)


def test_budget_in_steps_sets_the_epochs_unless_epochs_are_given():
    config = TrainConfig(max_steps=100, batch_size=10)
    assert config.epochs_for(100) == 10  # 10 steps per epoch
    assert config.epochs_for(1000) == 1
    assert config.epochs_for(15) == 50  # 2 steps per epoch
    assert TrainConfig(max_steps=100, epochs=3).epochs_for(1000) == 3
    with pytest.raises(ValueError, match="--epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="--max-steps"):
        TrainConfig(max_steps=0)


def test_without_a_budget_each_precision_gets_its_own_and_a_budget_given_stays():
    assert TrainConfig().max_steps is None
    assert TrainConfig().with_budget("float32").max_steps == DEFAULT_MAX_STEPS["float32"] == 1200
    assert TrainConfig().with_budget("bfloat16").max_steps == DEFAULT_MAX_STEPS["bfloat16"] == 4800
    assert TrainConfig(max_steps=100).with_budget("bfloat16").max_steps == 100
    with pytest.raises(ValueError, match="with_budget"):  # never a silent guess at the budget
        TrainConfig().epochs_for(100)
    assert TrainConfig(epochs=3).epochs_for(100) == 3  # epochs need no budget


def test_fit_trains_the_default_budget_of_the_precision_it_computes_in(monkeypatch):
    import training.config as config_module

    monkeypatch.setitem(config_module.DEFAULT_MAX_STEPS, "float32", 2)
    monkeypatch.setitem(config_module.DEFAULT_MAX_STEPS, "bfloat16", 6)
    monkeypatch.setattr(fit_module, "native_bfloat16", lambda device: True)
    train, val = _textures(8, seed=1), _textures(2, seed=2)
    epochs = {}
    for precision in ("float32", "bfloat16"):
        config = _config(epochs=None, precision=precision)  # batches of 4: 2 steps an epoch
        epochs[precision] = len(fit(_detector(), train, val, config, CPU, progress=False).history)
    assert epochs == {"float32": 1, "bfloat16": 3}


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_planned_steps():
    from training.fit import learning_rate_schedule

    rates = {}
    for schedule in ("constant", "cosine"):
        optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        scheduler = learning_rate_schedule(optimizer, _config(lr_schedule=schedule), total_steps=10)
        seen = []
        for _ in range(12):  # past the plan, it stays at the end value
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        rates[schedule] = seen
    assert rates["constant"] == [1e-3] * 12
    cosine = rates["cosine"]
    assert cosine[0] == pytest.approx(1e-3) and cosine[5] == pytest.approx(0.5e-3)
    assert all(a > b for a, b in pairwise(cosine[:11]))
    assert cosine[10] == cosine[11] == pytest.approx(0.0, abs=1e-12)


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="--lr-schedule"):
        _config(lr_schedule="step")
