"""Training settings and the named presets (the starting configuration and the project default)."""

import math
from dataclasses import asdict, dataclass, replace

from models.cae import CAEConfig
from models.detector import DetectorConfig
from models.head import HeadConfig
from models.scoring import FUSED_MAP, ScoringConfig
from models.texture_memory import TextureConfig

AUGMENTATIONS = ("none", "flip", "flip+rot90")
# The test-time flips (``ScoringConfig.test_time_flips``) each augmentation trains the model on: a
# flipped view is a fair second look only at a model that learned flipped normal images as normal.
TRAINED_FLIPS = {"none": (), "flip": ("h", "v", "hv"), "flip+rot90": ("h", "v", "hv")}
ON_COLLAPSE = ("stop", "warn")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "bfloat16")
# The default budget in optimizer steps of 16 images, by what training computes in. Float32's
# 1 200 steps are 20–30 minutes of a ~250-image category on 2 CPU cores; twice that was better on
# tire and not on magnetic_tile (BENCHMARKS.md §2). bfloat16 (a GPU's default, a CPU's option)
# lowered tire's image AUROC at 1 200 steps on three seeds of three, was level with float32 at
# 2 400, and at 4 800 beat float32's 1 200 on both datasets (BENCHMARKS.md §2, "bfloat16's own
# budget"): about 50 minutes on 2 CPU cores with AMX. Each precision's budget is the same on every
# machine, and a CPU trains in float32 unless asked, so one command gives one model on any CPU.
DEFAULT_MAX_STEPS = {"float32": 1200, "bfloat16": 4800}


@dataclass(frozen=True)
class TrainConfig:
    """How one category is trained; printed at start and saved in the checkpoint."""

    # The budget in optimizer steps, so that a small and a large category cost about the same;
    # epochs (when set) overrides it. Early stopping may end either sooner. None: the default
    # budget of the precision training computes in (``DEFAULT_MAX_STEPS``, ``with_budget``).
    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 16
    learning_rate: float = 1e-3  # Adam
    # "cosine" decays the rate to 0 over the planned steps, which calms the head's late validation
    # loss; measured with the default it helped on magnetic_tile and hurt on tire (BENCHMARKS.md §2),
    # so the default stays constant.
    lr_schedule: str = "constant"
    # Decay of an exponential moving average of the weights (``training.weight_average``), which is
    # then what is validated and kept; 0 keeps the live weights. At 0.995, over three seeds, it raised
    # magnetic_tile's AUPRO and lowered tire's every time (BENCHMARKS.md §2), so it is off by default.
    ema_decay: float = 0.0
    mse_loss_weight: float = 1.0
    ssim_loss_weight: float = 1.0  # structural loss: sharper reconstructions of fine texture
    sspcab_loss_weight: float = 0.1  # λ of the SSPCAB self-supervised loss (Ristea et al. use 0.1)
    segmentation_loss_weight: float = 1.0  # focal loss of the discriminative head (head presets only)
    focal_gamma: float = 2.0
    anomaly_probability: float = 0.5  # head presets: share of training images given a synthetic anomaly
    seamless_probability: float = 0.0  # head presets: share of blob anomalies cloned without a seam
    augment: str = "flip"  # "none", "flip" (horizontal+vertical), "flip+rot90"
    val_fraction: float = 0.1  # held-out normal images for early stopping and calibration
    patience: int = 15  # epochs without validation improvement before stopping; 0 disables
    # ... raised to this share of the planned epochs, so a larger budget waits longer: the validation
    # loss is noisy, and on tire it went 24 epochs without a new best (177 → 201) and went on
    # improving to epoch 248, where 20 epochs of patience had ended a 4800-step run at epoch 197 of
    # 343 (BENCHMARKS.md §2).
    patience_fraction: float = 0.0
    # Also keep the weights that training judges (the average, with one) at the end of the epoch
    # that completes each multiple of this many steps, each calibrated into a checkpoint of its own
    # (0: off). The validation loss on synthetic anomalies picks the kept model, but it does not
    # track real defects to the end: on tire image AUROC fell from 4 800 to 9 600 steps while that
    # loss went on falling (BENCHMARKS.md §2), so a user with a few real defects can compare these.
    snapshot_every: int = 0
    seed: int = 0
    image_quantile: float = 0.99  # calibration: quantile of normal validation image scores
    pixel_quantile: float = 0.999  # calibration: quantile of normal validation pixel values
    collapse_warmup: int = 10  # epochs before the constant-output check starts
    collapse_patience: int = 5  # consecutive collapsed epochs that stop training
    collapse_ratio: float = 0.9  # collapsed: validation MSE >= this × the mean-image MSE ...
    collapse_diversity: float = 0.05  # ... and reconstructions vary less than this × the inputs
    # Without a head a collapsed model is useless, so "stop" ends training with an error; "warn"
    # trains on and records the epoch, for comparisons that need the collapsed model's metrics.
    on_collapse: str = "stop"
    # What training's forward passes compute in (``training.fit.mixed_precision``). "auto": bfloat16
    # autocast on a GPU that computes it natively (Ampere on), float32 elsewhere — a CPU with AMX or
    # AVX512-BF16 trains 2.5× faster in bfloat16, but needs four times float32's steps to beat it
    # (``DEFAULT_MAX_STEPS``), so a CPU's default stays float32 and one command gives one model on
    # any CPU. "bfloat16" asks for it wherever the device computes it natively.
    precision: str = "auto"

    def __post_init__(self) -> None:
        positive = ("batch_size", "collapse_patience")
        for name in ("epochs", "max_steps"):  # None: not set
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate}")
        for name in (
            "mse_loss_weight",
            "ssim_loss_weight",
            "sspcab_loss_weight",
            "patience",
            "snapshot_every",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1) (0: off), got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.on_collapse not in ON_COLLAPSE:
            raise ValueError(f"--on-collapse must be one of {ON_COLLAPSE}, got {self.on_collapse!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"--augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        for name in ("anomaly_probability", "seamless_probability", "patience_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        # Checked here, not only where they are used, so a bad value fails before training, not after.
        for name in ("val_fraction", "image_quantile", "pixel_quantile"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in (0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def patience_for(self, epochs: int) -> int:
        """Epochs without a better validation loss that end a run of ``epochs``: ``patience``, or
        ``patience_fraction`` of the run if that is more; 0 (patience off) never stops early."""
        if not self.patience:
            return 0
        return max(self.patience, math.ceil(self.patience_fraction * epochs))

    def with_budget(self, precision: str) -> "TrainConfig":
        """This config with ``max_steps`` set: as given, or the default of ``precision`` ("float32"
        or "bfloat16"), what training's forward passes compute in (``training.fit.mixed_precision``)."""
        if self.max_steps is not None:
            return self
        return replace(self, max_steps=DEFAULT_MAX_STEPS[precision])

    def epochs_for(self, train_images: int) -> int:
        """Epochs to run: ``epochs`` if set, else enough to reach ``max_steps`` (``with_budget``)."""
        if self.epochs is not None:
            return self.epochs
        if self.max_steps is None:
            raise ValueError("TrainConfig.max_steps is not set: with_budget(precision) sets it")
        return max(1, math.ceil(self.max_steps / math.ceil(train_images / self.batch_size)))


@dataclass(frozen=True)
class Preset:
    detector: DetectorConfig
    train: TrainConfig
    description: str
    # How ``fit`` sets ``detector.resize``: "auto" chooses from the training images' shapes
    # (``training.data.choose_resize``); one of ``models.preprocess.RESIZE_MODES`` pins it.
    resize: str = "auto"
    # How ``fit`` sets ``detector.roi``: "auto" boxes the part found in the training images
    # (``training.part_box``), "none" inspects the whole image; ``fit --roi`` overrides it.
    roi: str = "auto"


# The default's CAE alone (the head ablation), scored like the default: over the same flips.
RECONSTRUCTION = DetectorConfig(
    cae=CAEConfig(batch_norm=True), scoring=ScoringConfig(test_time_flips=("h", "v", "hv"))
)

PRESETS: dict[str, Preset] = {
    # What the project was specified from: 126² CAE with SSPCAB but without its loss, MSE only,
    # raw squared-error map. 500 epochs in the specification; early stopping off to match it.
    "starting": Preset(
        DetectorConfig(cae=CAEConfig.starting(), scoring=ScoringConfig.starting()),
        TrainConfig(epochs=500, ssim_loss_weight=0.0, sspcab_loss_weight=0.0, augment="none", patience=0),
        "126² CAE + SSPCAB block without its loss, MSE loss, per-pixel squared-error map",
        resize="stretch",
        roi="none",
    ),
    # Reconstruction only: BatchNorm keeps dark low-contrast data from collapsing to a constant,
    # SSPCAB trains with its own loss, L2 + SSIM loss, structure-aware maps (SSIM + MSGMS).
    "reconstruction": Preset(
        RECONSTRUCTION,
        TrainConfig(),
        "126² CAE + SSPCAB with its loss, BatchNorm, L2+SSIM loss, smoothed SSIM+MSGMS map averaged over flips",
    ),
    # The project default: the reconstruction model trained on synthetic anomalies plus a
    # discriminative U-Net head (with SSPCAB); the anomaly map fuses the head's segmentation with
    # the SSIM+MSGMS reconstruction error, each in units of its own normal high quantile (on real
    # data the head alone misses what the error sees, and the reverse: BENCHMARKS.md §2), averaged
    # over the image and the three flips it trains on, which lowers the spurious peaks of normal
    # images more than defects (image AUROC +0.002 to +0.040 over two seeds of both datasets, at
    # about 4× the model's CPU time: BENCHMARKS.md §2). The image score is the mean of the top
    # 0.2 % of that map, robust to isolated pixels. A memory of normal
    # texture statistics adds a third part to the pixel map: regions of unusual texture that
    # neither of the others sees (it needs no training; the memory is filled after it). Images of
    # one shape are stretched to the square, images of varying shapes letterboxed (``Preset.resize``
    # "auto"): on magnetic_tile's tiles the letterbox raised pixel AUROC on three seeds of three and
    # kept image AUROC level or higher (BENCHMARKS.md §2). A part on a backdrop is boxed
    # (``Preset.roi`` "auto", ``training.part_box``): on tire the found box raised pixel AUROC and
    # AUPRO on three seeds of three; a texture that fills the frame is inspected whole.
    "default": Preset(
        DetectorConfig(
            cae=CAEConfig(batch_norm=True),
            scoring=ScoringConfig(
                anomaly_map=FUSED_MAP,
                smoothing_sigma=2.0,
                score_reduction="topk",
                topk_fraction=0.002,
                test_time_flips=("h", "v", "hv"),
            ),
            head=HeadConfig(),
            texture=TextureConfig(),
        ),
        TrainConfig(patience=20, patience_fraction=0.25),
        "126² CAE + SSPCAB (with its loss) reconstructing synthetic anomalies, and a discriminative "
        "U-Net head with SSPCAB; map: head segmentation fused with the SSIM+MSGMS error, averaged "
        "over the image's flips (and, for pixels, a normal-texture memory's distance)",
    ),
}


def preset(name: str, channels: int, **train_overrides) -> Preset:
    """A preset with the data's channel count and any training overrides applied."""
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {name!r}")
    base = PRESETS[name]
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    train = replace(base.train, **overrides)
    scoring = base.detector.scoring
    flips = tuple(f for f in scoring.test_time_flips if f in TRAINED_FLIPS[train.augment])
    detector = replace(
        base.detector,
        cae=replace(base.detector.cae, in_channels=channels),
        scoring=replace(scoring, test_time_flips=flips),
    )
    return replace(base, detector=detector, train=train)
