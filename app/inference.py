"""One forward pass over a batch of decoded images, and everything that must happen on the device.

Runs only on the inference worker thread (``app.batcher``), which owns every model call. On the
host: the cut to the checkpoint's region of interest, if it has one, so that only the part's
pixels cross to the device. On the device: uint8 → float and the resize to the model's input
(``models.preprocess.to_model_input``, the same function training used), the forward pass, then
per image the anomaly map resized back to the image's own size, the defect mask at the pixel
threshold (the request's override or the calibrated one), and the anomalous area. Only small things
cross back to the CPU: the scores, a bool mask and an 8-bit anomaly map per image; rendering and
PNG encoding happen in the codec pool.

A batch that runs out of device memory is split in halves and retried, down to single images
(``run_in_halves``): a burst of large images then costs more passes instead of failing every request
in the batch, and only an image that does not fit even alone fails.

The 8-bit anomaly map is ``min(255, round(128 · value / calibrated pixel threshold))``: 128 is the
calibrated pixel threshold, 64 half of it, 255 twice it or more. The calibrated threshold, not the
override, sets the scale so that a map means the same thing whatever threshold a client asks for.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.checkpoint import Checkpoint
from models.precision import network_precision
from models.preprocess import to_image_size
from models.scoring import defect_mask

logger = logging.getLogger(__name__)

THRESHOLD_LEVEL = 128  # the calibrated pixel threshold's level in the 8-bit anomaly map


@dataclass(frozen=True)
class ImageInference:
    """What the model says about one image, on the CPU, at the image's own resolution.

    Args:
        score: raw image score.
        normalized_score: in [0, 1], 0.5 at the calibrated image threshold.
        is_anomalous: score above the calibrated image threshold.
        pixel_threshold: the threshold that made the mask.
        anomalous_area_fraction: share of the image's pixels in the mask.
        mask: (H, W) bool defect mask.
        anomaly_map: (H, W) uint8, ``THRESHOLD_LEVEL`` at the calibrated pixel threshold.
    """

    score: float
    normalized_score: float
    is_anomalous: bool
    pixel_threshold: float
    anomalous_area_fraction: float
    mask: np.ndarray
    anomaly_map: np.ndarray


def map_levels(amap: torch.Tensor, pixel_threshold: float) -> torch.Tensor:
    """(H, W) float anomaly map → (H, W) uint8 levels with ``pixel_threshold`` at 128."""
    scale = THRESHOLD_LEVEL / max(pixel_threshold, 1e-12)
    return (amap * scale).round_().clamp_(0, 255).to(torch.uint8)


@torch.inference_mode()
def run_batch(
    checkpoint: Checkpoint,
    images: Sequence[np.ndarray],
    pixel_thresholds: Sequence[float | None],
    device: torch.device,
    precision: str = "float32",
) -> list[ImageInference]:
    """Score ``images`` with one forward pass.

    Args:
        checkpoint: the category's model, already on ``device``.
        images: each (H, W, C) uint8 with the checkpoint's number of channels, any H and W.
        pixel_thresholds: per image, an override of the calibrated pixel threshold, or None.
        device: where the model lives.
        precision: what its networks compute in (``models.precision``; maps and scores stay float32).
    Returns:
        One ImageInference per image, in order.
    """
    calibration = checkpoint.calibration
    x = checkpoint.model_input([torch.from_numpy(image) for image in images], device)  # (B, C, S, S)
    with network_precision(precision, device):
        output = checkpoint.detector(x)
    normalized = calibration.normalize(output.image_score)  # (B,)
    masks, levels, areas, used = [], [], [], []
    for i, image in enumerate(images):
        override = pixel_thresholds[i]
        threshold = calibration.pixel_threshold if override is None else override
        amap = to_image_size(
            output.anomaly_map[i], image.shape[0], image.shape[1], checkpoint.resize, checkpoint.roi
        )  # (H, W), zero outside a region of interest
        mask = defect_mask(amap, threshold)  # (H, W) bool
        masks.append(mask)
        levels.append(map_levels(amap, calibration.pixel_threshold))
        areas.append(mask.float().mean())
        used.append(float(threshold))
    scores = output.image_score.float().cpu().tolist()
    normalized_scores = normalized.float().cpu().tolist()
    area_fractions = torch.stack(areas).cpu().tolist()
    return [
        ImageInference(
            score=scores[i],
            normalized_score=normalized_scores[i],
            is_anomalous=scores[i] > calibration.image_threshold,
            pixel_threshold=used[i],
            anomalous_area_fraction=area_fractions[i],
            mask=masks[i].cpu().numpy(),
            anomaly_map=levels[i].cpu().numpy(),
        )
        for i in range(len(images))
    ]


def release_cached_memory(device: torch.device) -> None:
    """After an out-of-memory error: hand the allocator's cached blocks back before the retry."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_in_halves(
    checkpoint: Checkpoint,
    images: Sequence[np.ndarray],
    pixel_thresholds: Sequence[float | None],
    device: torch.device,
    precision: str = "float32",
) -> list[ImageInference | torch.cuda.OutOfMemoryError]:
    """``run_batch``, splitting a batch that runs out of device memory in halves, down to single images.

    Args: as ``run_batch``.
    Returns:
        Per image, in order, its ImageInference, or the OutOfMemoryError of an image that does not
        fit even alone. Any other error propagates, for the whole batch.
    """
    try:
        return list(run_batch(checkpoint, images, pixel_thresholds, device, precision))
    except torch.cuda.OutOfMemoryError as err:  # also torch.OutOfMemoryError, its newer name
        release_cached_memory(device)
        if len(images) == 1:
            height, width = images[0].shape[:2]
            logger.error("out of device memory on a single %d×%d image: %s", width, height, err)
            return [err]
        half = len(images) // 2
        logger.warning(
            "out of device memory on a batch of %d images; retrying as %d + %d",
            len(images),
            half,
            len(images) - half,
        )
        first = run_in_halves(checkpoint, images[:half], pixel_thresholds[:half], device, precision)
        return first + run_in_halves(checkpoint, images[half:], pixel_thresholds[half:], device, precision)


def warm_up(checkpoint: Checkpoint, device: torch.device, precision: str = "float32") -> None:
    """One pass through the whole path, in the precision it will serve in, with a grey image a bit
    larger than the model input."""
    side = checkpoint.input_size + 8
    channels = checkpoint.detector.config.channels
    grey = np.full((side, side, channels), 128, dtype=np.uint8)
    run_batch(checkpoint, [grey], [None], device, precision)
