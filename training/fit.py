"""The training loop: one detector per category, reconstructing normal images only.

Loss = w_mse · MSE + w_ssim · (1 − SSIM) + λ · SSPCAB self-supervised loss (Ristea et al., CVPR
2022). The best model on held-out normal images is kept, training stops early when validation stops
improving, and a constant-output collapse (a model that only reproduces the mean image) is detected
and stops training with an explanation instead of producing a useless checkpoint.
"""

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.detector import AnomalyDetector
from models.scoring import ssim_loss
from training.config import TrainConfig


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


@dataclass
class FitResult:
    detector: AnomalyDetector
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available; ``cuda`` without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    return device


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


def reconstruction_loss(x: torch.Tensor, recon: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    loss = config.mse_loss_weight * F.mse_loss(recon, x)
    if config.ssim_loss_weight:
        loss = loss + config.ssim_loss_weight * ssim_loss(x, recon)
    return loss


@torch.no_grad()
def validate(
    model: nn.Module, val: torch.Tensor, mean_image: torch.Tensor, config: TrainConfig
) -> tuple[float, float, float, float]:
    """Validation loss, MSE, mean-image MSE and reconstruction diversity on normal held-out images."""
    model.eval()
    losses, mses, recons = [], [], []
    for start in range(0, val.shape[0], config.batch_size):
        x = val[start : start + config.batch_size]
        recon = model(x).float()
        losses.append(float(reconstruction_loss(x, recon, config)) * x.shape[0])
        mses.append(float(F.mse_loss(recon, x)) * x.shape[0])
        recons.append(recon)
    n = val.shape[0]
    recon = torch.cat(recons)
    mean_image_mse = float(F.mse_loss(mean_image.expand_as(val), val))
    diversity = float(recon.std(dim=0).mean() / val.std(dim=0).mean().clamp_min(1e-8))
    return sum(losses) / n, sum(mses) / n, mean_image_mse, diversity


def fit(
    detector: AnomalyDetector,
    train: torch.Tensor,
    val: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    progress: bool = True,
) -> FitResult:
    """Train ``detector.cae`` on normal images.

    Args:
        detector: the detector to train (its CAE is trained; scoring has no parameters).
        train: (N, C, S, S) normal training images in [0, 1], on any device.
        val: (M, C, S, S) held-out normal images.
        config: the training settings.
        device: where to train.
        progress: show a tqdm bar per epoch.
    Returns:
        The detector with the best validation weights loaded, in eval mode, and the history.
    Raises:
        TrainingCollapsed: validation MSE stayed at the mean-image level (see ``TrainConfig``).
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = detector.cae.to(device)
    use_amp = config.amp and device.type == "cuda"
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    train, val = train.to(device), val.to(device)
    mean_image = train.mean(dim=0, keepdim=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    result = FitResult(detector)
    best_loss, best_state, collapsed_epochs = math.inf, None, 0
    started = time.perf_counter()
    bar = _progress(config.epochs, progress)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(train.shape[0], generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            x = augment(train[order[start : start + config.batch_size].to(device)], config.augment, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                recon, sspcab_loss = model.forward_with_loss(x)
            loss = (
                reconstruction_loss(x, recon.float(), config)
                + config.sspcab_loss_weight * sspcab_loss.float()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * x.shape[0]
        val_loss, val_mse, mean_mse, diversity = validate(model, val, mean_image, config)
        record = EpochRecord(
            epoch, total / train.shape[0], val_loss, val_mse, mean_mse, diversity, time.perf_counter() - t0
        )
        result.history.append(record)
        if val_loss < best_loss:
            best_loss, best_state, result.best_epoch = val_loss, copy.deepcopy(model.state_dict()), epoch
        bar.set_postfix(
            train=f"{record.train_loss:.4f}", val=f"{val_loss:.4f}", best=result.best_epoch, s=f"{record.seconds:.1f}"
        )
        bar.update()
        collapsed_epochs = collapsed_epochs + 1 if _collapsed(record, config) else 0
        if collapsed_epochs >= config.collapse_patience:
            bar.close()
            raise TrainingCollapsed(
                f"training collapsed to a constant output at epoch {epoch}: validation MSE {val_mse:.5f} "
                f"is no better than the mean image ({mean_mse:.5f}) and reconstructions barely vary "
                f"(diversity {diversity:.3f}); try the default preset (BatchNorm), a lower "
                f"--learning-rate, or --ssim-loss-weight 1"
            )
        if config.patience and epoch - result.best_epoch >= config.patience:
            result.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)
    detector.eval()
    result.seconds = time.perf_counter() - started
    return result


def _collapsed(record: EpochRecord, config: TrainConfig) -> bool:
    return (
        record.epoch > config.collapse_warmup
        and record.val_mse >= config.collapse_ratio * record.mean_image_mse
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
        self.epoch, self.postfix = 0, {}

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def update(self, *_) -> None:
        self.epoch += 1
        print(f"epoch {self.epoch}: " + " ".join(f"{k} {v}" for k, v in self.postfix.items()), file=sys.stderr)

    def close(self) -> None: ...
