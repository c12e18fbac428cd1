"""The training loop: one detector per category, from normal images only.

Loss = w_mse · MSE + w_ssim · (1 − SSIM) + λ · SSPCAB self-supervised loss (Ristea et al., CVPR
2022). With a discriminative head (DRAEM, Zavrtanik et al., ICCV 2021), half the training images
carry a synthetic anomaly (``training.anomaly_synthesis``): the autoencoder learns to reconstruct
the clean image from it, and the head adds a focal segmentation loss against the anomaly's exact
mask. The best model on held-out normal images is kept, training stops early when validation stops
improving, and a constant-output collapse (a model that only reproduces the mean image) is detected.
Without a head the reconstruction error is the anomaly map, so a collapse stops training with an
explanation instead of producing a useless checkpoint (unless ``on_collapse`` is "warn", for
comparisons that want the collapsed model's figures). With a head it is reported and recorded, not
fatal: the head compares the image with the reconstruction, and the mean normal image is still a
reference it can judge against (nearly uniform textures reconstruct no better than their mean), so
its validation segmentation loss, not the reconstruction, says whether the model is useful."""

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from models.detector import AnomalyDetector
from models.precision import EMULATED, native_bfloat16
from models.scoring import ssim_loss
from training.anomaly_synthesis import synthesize_batch
from training.config import TrainConfig
from training.weight_average import WeightAverage, refresh_batch_norm


class TrainingCollapsed(RuntimeError):
    """The autoencoder learned nothing beyond the mean image: its output no longer depends on its input."""


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_mse: float
    mean_image_mse: float  # what a constant mean-image output would score on validation
    diversity: float  # spread of reconstructions across images relative to the inputs' spread
    seconds: float
    val_segmentation_loss: float = 0.0  # head only: focal loss on fixed synthetic validation anomalies


@dataclass
class Snapshot:
    """The judged weights at the end of one epoch (``TrainConfig.snapshot_every``)."""

    epoch: int
    steps: int  # optimizer steps done by the end of that epoch
    val_loss: float
    state: dict[str, torch.Tensor]


@dataclass
class FitResult:
    detector: AnomalyDetector
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    patience: int = 0  # the epochs without improvement that would stop it (0: never)
    seconds: float = 0.0
    reconstruction_collapsed_at: int | None = None  # the epoch a collapse was reported (training went on)
    precision: str = "float32"  # what the forward passes of training ran in: "bfloat16" with mixed precision
    snapshots: list[Snapshot] = field(default_factory=list)  # in training order


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available; ``cuda`` without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    return device


def mixed_precision(precision: str, device: torch.device) -> bool:
    """Whether training on ``device`` autocasts to bfloat16, for ``TrainConfig.precision``.

    Raises:
        ValueError: bfloat16 asked for on a device that would only emulate it.
    """
    if precision == "float32":
        return False
    if precision == "auto":
        return device.type == "cuda" and native_bfloat16(device)
    if not native_bfloat16(device):
        raise ValueError(f"--precision bfloat16: {device} {EMULATED}")
    return True


def augment(batch: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random flips (and quarter turns) per image; the augmented image is also the target."""
    if mode == "none":
        return batch
    out = batch.clone()
    n = batch.shape[0]
    flips = torch.rand(n, 2, generator=generator)
    out[flips[:, 0] < 0.5] = out[flips[:, 0] < 0.5].flip(-1)
    out[flips[:, 1] < 0.5] = out[flips[:, 1] < 0.5].flip(-2)
    if mode == "flip+rot90":
        turn = torch.rand(n, generator=generator) < 0.5
        out[turn] = out[turn].transpose(-1, -2)
    return out


def random_crops(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random size × size window of each (C, S, S) image; the batch itself when S == size.

    How a detector with ``DetectorConfig.image_size`` trains: its convolutional parts learn from
    windows of the larger image at the cost of the CAE's input, and score the whole image later.
    """
    side = batch.shape[-1]
    if side == size:
        return batch
    corners = torch.randint(0, side - size + 1, (batch.shape[0], 2), generator=generator).tolist()
    return torch.stack(
        [image[:, r : r + size, c : c + size] for image, (r, c) in zip(batch, corners, strict=True)]
    )


def reconstruction_loss(x: torch.Tensor, recon: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    loss = config.mse_loss_weight * F.mse_loss(recon, x)
    if config.ssim_loss_weight:
        loss = loss + config.ssim_loss_weight * ssim_loss(x, recon)
    return loss


def focal_loss(logits: torch.Tensor, masks: torch.Tensor, gamma: float) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al., ICCV 2017), mean over pixels: defects are a few pixels of
    many, and the focal term keeps the easy normal pixels from drowning them."""
    ce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
    p_true = torch.exp(-ce)
    return ((1 - p_true) ** gamma * ce).mean()


def training_loss(
    detector: AnomalyDetector, x: torch.Tensor, config: TrainConfig, rng: np.random.Generator, use_amp: bool
) -> torch.Tensor:
    """One batch's loss. With a head, inputs carry synthetic anomalies and the target stays clean."""
    inputs, masks = x, None
    if detector.head is not None:
        inputs, masks = synthesize_batch(x, rng, config.anomaly_probability, config.seamless_probability)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        recon, sspcab_loss = detector.cae.forward_with_loss(inputs)
        logits = detector.head(inputs, recon) if detector.head is not None else None
    loss = reconstruction_loss(x, recon.float(), config) + config.sspcab_loss_weight * sspcab_loss.float()
    if logits is not None and masks is not None:
        loss = loss + config.segmentation_loss_weight * focal_loss(logits.float(), masks, config.focal_gamma)
    return loss


@torch.no_grad()
def validate(
    detector: AnomalyDetector,
    val: torch.Tensor,
    mean_image: torch.Tensor,
    config: TrainConfig,
    anomalies: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[float, float, float, float, float]:
    """On held-out normal images: validation loss, MSE, mean-image MSE, reconstruction diversity,
    and (with a head) the segmentation loss on a fixed set of synthetic anomalies."""
    detector.eval()
    losses, mses, recons, seg = [], [], [], []
    for start in range(0, val.shape[0], config.batch_size):
        x = val[start : start + config.batch_size]
        recon = detector.cae(x).float()
        losses.append(float(reconstruction_loss(x, recon, config)) * x.shape[0])
        mses.append(float(F.mse_loss(recon, x)) * x.shape[0])
        recons.append(recon)
        if anomalies is not None and detector.head is not None:
            aug, masks = (t[start : start + config.batch_size] for t in anomalies)
            logits = detector.head(aug, detector.cae(aug)).float()
            seg.append(float(focal_loss(logits, masks, config.focal_gamma)) * x.shape[0])
    n = val.shape[0]
    recon = torch.cat(recons)
    mean_image_mse = float(F.mse_loss(mean_image.expand_as(val), val))
    diversity = float(recon.std(dim=0).mean() / val.std(dim=0).mean().clamp_min(1e-8))
    seg_loss = sum(seg) / n if seg else 0.0
    val_loss = sum(losses) / n + config.segmentation_loss_weight * seg_loss
    return val_loss, sum(mses) / n, mean_image_mse, diversity, seg_loss


def fit(
    detector: AnomalyDetector,
    train: torch.Tensor,
    val: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    progress: bool = True,
) -> FitResult:
    """Train the detector on normal images (and, with a head, on synthetic anomalies).

    Args:
        detector: the detector to train: its CAE, and its discriminative head if it has one.
        train: (N, C, S, S) normal training images in [0, 1] at the detector's input size, on any
            device; larger than the CAE's own input, they are cropped to it (``random_crops``).
        val: (M, C, S, S) held-out normal images.
        config: the training settings; without ``max_steps``, the default budget of the precision
            it trains in (``TrainConfig.with_budget``).
        device: where to train.
        progress: show a tqdm bar per epoch.
    Returns:
        The detector with the best validation weights loaded (with ``TrainConfig.ema_decay``, the
        best epoch's weight average), in eval mode, the history, and with
        ``TrainConfig.snapshot_every`` the weights judged at the epochs that complete each multiple
        of it (at most one an epoch).
    Raises:
        TrainingCollapsed: validation MSE stayed at the mean-image level (see ``TrainConfig``).
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    detector.to(device)
    use_amp = mixed_precision(config.precision, device)
    config = config.with_budget("bfloat16" if use_amp else "float32")
    # cuDNN and oneDNN convolve channels-last tensors faster. Float32 on the CPU keeps the default
    # layout all the same (1.23× faster in channels-last, ``benchmarks.train_step``): the layout
    # changes float32's rounding, and so every CPU figure in BENCHMARKS.md would stop reproducing.
    if device.type == "cuda" or use_amp:
        detector.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    train, val = train.to(device), val.to(device)
    crop = detector.config.cae.input_size  # smaller than the images with DetectorConfig.image_size
    mean_image = train.mean(dim=0, keepdim=True)
    # A fixed set of synthetic anomalies on the validation images: comparable from epoch to epoch.
    anomalies = (
        synthesize_batch(val, np.random.default_rng([config.seed, 1]), 1.0, config.seamless_probability)
        if detector.head
        else None
    )
    optimizer = torch.optim.Adam(detector.parameters(), lr=config.learning_rate)
    # With an average, it is what is validated, early-stopped on and kept; the live weights train.
    average = WeightAverage(detector, config.ema_decay) if config.ema_decay else None
    judged = average.model if average else detector
    norm_batches = _batch_norm_batches(train, crop, config) if average else None
    epochs = config.epochs_for(train.shape[0])
    scheduler = learning_rate_schedule(
        optimizer, config, epochs * math.ceil(train.shape[0] / config.batch_size)
    )
    result = FitResult(
        detector, patience=config.patience_for(epochs), precision="bfloat16" if use_amp else "float32"
    )
    best_loss, best_state, collapsed_epochs = math.inf, None, 0
    steps = 0
    started = time.perf_counter()
    bar = _progress(epochs, progress)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        detector.train()
        order = torch.randperm(train.shape[0], generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            x = augment(train[order[start : start + config.batch_size].to(device)], config.augment, generator)
            x = random_crops(x, crop, generator)
            loss = training_loss(detector, x, config, rng, use_amp)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            if average:
                average.update(detector)
            total += float(loss.detach()) * x.shape[0]
        if norm_batches is not None:  # with an average
            refresh_batch_norm(judged, lambda: _forward_all(judged, norm_batches))
        val_loss, val_mse, mean_mse, diversity, seg_loss = validate(
            judged, val, mean_image, config, anomalies
        )
        record = EpochRecord(
            epoch,
            total / train.shape[0],
            val_loss,
            val_mse,
            mean_mse,
            diversity,
            time.perf_counter() - t0,
            seg_loss,
        )
        result.history.append(record)
        if val_loss < best_loss:
            best_loss, best_state, result.best_epoch = val_loss, copy.deepcopy(judged.state_dict()), epoch
        every = config.snapshot_every
        if every and steps // every > (result.snapshots[-1].steps // every if result.snapshots else 0):
            result.snapshots.append(Snapshot(epoch, steps, val_loss, copy.deepcopy(judged.state_dict())))
        bar.set_postfix(
            train=f"{record.train_loss:.4f}",
            val=f"{val_loss:.4f}",
            best=result.best_epoch,
            s=f"{record.seconds:.1f}",
        )
        bar.update()
        collapsed_epochs = collapsed_epochs + 1 if _collapsed(record, config) else 0
        if collapsed_epochs >= config.collapse_patience:
            what = (
                f"validation MSE {val_mse:.5f} is no better than the mean image ({mean_mse:.5f}) and "
                f"reconstructions barely vary (diversity {diversity:.3f})"
            )
            if detector.head is None and config.on_collapse == "stop":
                bar.close()
                raise TrainingCollapsed(
                    f"training collapsed to a constant output at epoch {epoch}: {what}; try the default "
                    f"preset (BatchNorm), a lower --learning-rate, or --ssim-loss-weight 1"
                )
            if result.reconstruction_collapsed_at is None:
                result.reconstruction_collapsed_at = epoch
                consequence = (
                    "the head goes on judging images against it (see its validation segmentation loss)"
                    if detector.head is not None
                    else "training goes on (--on-collapse warn), but its anomaly map is likely useless"
                )
                print(
                    f"warning: the reconstruction is no better than the mean image at epoch {epoch}: {what}; "
                    + consequence,
                    file=sys.stderr,
                )
        if result.patience and epoch - result.best_epoch >= result.patience:
            result.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        detector.load_state_dict(best_state)
    detector.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    detector.eval()
    result.seconds = time.perf_counter() - started
    return result


# Training images (at most) that measure the weight average's BatchNorm statistics each epoch:
# four batches of forward passes, a few seconds on the CPU.
NORM_IMAGES = 64


def _batch_norm_batches(train: torch.Tensor, crop: int, config: TrainConfig) -> list[torch.Tensor]:
    """A fixed sample of training inputs like those the model trains on (cropped, and with the
    head carrying synthetic anomalies at the training rate), in training-size batches."""
    generator = torch.Generator().manual_seed(config.seed + 2)
    chosen = torch.randperm(train.shape[0], generator=generator)[:NORM_IMAGES].to(train.device)
    images = random_crops(train[chosen], crop, generator)
    rng = np.random.default_rng([config.seed, 2])
    batches = []
    for start in range(0, images.shape[0], config.batch_size):
        batch = images[start : start + config.batch_size]
        batches.append(
            synthesize_batch(batch, rng, config.anomaly_probability, config.seamless_probability)[0]
        )
    return batches


def _forward_all(detector: AnomalyDetector, batches: list[torch.Tensor]) -> None:
    for inputs in batches:
        recon = detector.cae(inputs)
        if detector.head is not None:
            detector.head(inputs, recon)


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier of the learning rate: 1 throughout, or a cosine from 1 to 0 over
    ``total_steps`` (the planned steps; early stopping may end sooner)."""
    if config.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )


def _collapsed(record: EpochRecord, config: TrainConfig) -> bool:
    return (
        record.epoch > config.collapse_warmup
        and record.val_mse >= config.collapse_ratio * record.mean_image_mse
        # A stationary texture can be predicted nearly as well by its mean as by any model; only an
        # output that also ignores its input is the collapse that makes a useless checkpoint.
        and record.diversity < config.collapse_diversity
    )


def _progress(total: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm ships with the [train] extra; training still works without it
        enabled = False
    if not enabled:
        return _Silent()
    return tqdm(total=total, desc="epochs", unit="epoch", leave=False)


class _Silent:
    """Without a progress bar (logs, CI), one line per epoch on stderr instead."""

    def __init__(self) -> None:
        self.epoch = 0
        self.postfix: dict[str, object] = {}

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def update(self, *_) -> None:
        self.epoch += 1
        print(
            f"epoch {self.epoch}: " + " ".join(f"{k} {v}" for k, v in self.postfix.items()), file=sys.stderr
        )

    def close(self) -> None: ...
