"""Calibration: decision thresholds from held-out normal images, never from test labels.

The default derives the image threshold and the pixel threshold from high quantiles of normal
validation image scores and pixel values; a fused map (``head+ssim+gms``) first gets the scales of
its parts (two, three with a texture memory) from the same images. The F1-optimal alternative
looks at a labelled test set and is therefore optimistic; it exists for comparisons, runs only
behind ``--f1-optimal``, and is recorded as such in the checkpoint.
"""

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from models.calibration import Calibration, from_normal_scores, pixel_quantile_of
from models.detector import AnomalyDetector
from models.flips import flip_views, merge_views
from models.precision import network_precision
from models.preprocess import to_image_size
from models.scoring import smooth
from training.inference import score_images
from training.metrics import f1_max


def calibrate_on_normals(
    detector: AnomalyDetector,
    val: torch.Tensor,
    device: torch.device,
    image_quantile: float,
    pixel_quantile: float,
    precision: str = "float32",
) -> Calibration:
    """Thresholds from (M, C, S, S) normal validation images, the networks in ``precision`` (the
    one the service will run them in: ``models.precision``). A fused map first gets its parts'
    scales from the same images, at the same pixel quantile as the pixel threshold."""
    details: dict = {"precision": precision}
    if detector.texture is not None and not bool(detector.texture.filled):
        raise ValueError("the texture memory is empty: fill it from the training images before calibrating")
    if detector.fused:
        scales = fused_map_scales(detector, val, device, pixel_quantile, precision=precision)
        detector.set_map_scales(*scales)
        details["map_scales"] = {**dict(zip(FUSED_PARTS, scales, strict=False)), "quantile": pixel_quantile}
    scores, maps, _ = score_images(detector, val, device, precision=precision)
    calibration = from_normal_scores(scores, maps, image_quantile, pixel_quantile)
    return replace(calibration, details={**calibration.details, **details})


# A head that is certain of every normal pixel has a high quantile near 0; dividing by it would turn
# its faintest doubt into a huge value, so the scale never goes below this probability.
MIN_HEAD_SCALE = 1e-3
FUSED_PARTS = ("head", "ssim+gms", "texture")


@torch.no_grad()
def fused_map_scales(
    detector: AnomalyDetector,
    val: torch.Tensor,
    device: torch.device,
    quantile: float,
    batch_size: int = 32,
    precision: str = "float32",
) -> tuple[float, ...]:
    """The ``quantile`` of the smoothed head probability, of the smoothed SSIM+MSGMS map and (with
    a texture memory) of the smoothed texture distance over the pixels of (M, C, S, S) normal
    images: the units the fused map divides its parts by."""
    detector.eval().to(device)
    sigma = detector.config.scoring.smoothing_sigma
    flips = detector.config.scoring.test_time_flips
    heads, errors, textures = [], [], []
    for start in range(0, val.shape[0], batch_size):
        x = val[start : start + batch_size].to(device)
        views = flip_views(x, flips)  # each part averaged over the views, as the detector does
        with network_precision(precision, device):  # the parts themselves come back float32
            probability, error = detector.fused_parts(views, detector.cae(views))
        heads.append(smooth(merge_views(probability, flips), sigma).cpu())
        errors.append(smooth(merge_views(error, flips), sigma).cpu())
        if detector.texture is not None:
            textures.append(smooth(detector.texture(x), sigma).cpu())
    scales = [
        max(pixel_quantile_of(torch.cat(heads), quantile), MIN_HEAD_SCALE),
        max(pixel_quantile_of(torch.cat(errors), quantile), 1e-12),
    ]
    if textures:
        scales.append(max(pixel_quantile_of(torch.cat(textures), quantile), 1e-12))
    return tuple(scales)


def calibrate_f1_optimal(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: Sequence[torch.Tensor],
    masks: Sequence[np.ndarray],
    normal_scale: float,
) -> Calibration:
    """Optimistic thresholds that maximise image and pixel F1 on a labelled set.

    Args:
        scores: (N,) image scores; labels: (N,) 1 for anomalous.
        maps: (S, S) anomaly maps; masks: ground-truth masks at their own resolution.
        normal_scale: logistic scale for the normalised score (kept from the normal calibration).
    """
    image_f1, image_threshold = f1_max(labels, scores)
    pixel_scores = np.concatenate(
        [to_image_size(m, *mask.shape).numpy().ravel() for m, mask in zip(maps, masks, strict=True)]
    )
    pixel_labels = np.concatenate([mask.ravel() for mask in masks])
    pixel_f1, pixel_threshold = f1_max(pixel_labels, pixel_scores)
    return Calibration(
        pixel_threshold=_for_strict_rule(pixel_scores, pixel_threshold),
        image_threshold=_for_strict_rule(np.asarray(scores), image_threshold),
        score_scale=normal_scale,
        method="f1-optimal (optimistic: uses test labels)",
        details={"image_f1": float(image_f1), "pixel_f1": float(pixel_f1), "images": len(scores)},
    )


def _for_strict_rule(scores: np.ndarray, threshold: float) -> float:
    """``f1_max`` returns a threshold for ``score >= t``, but the detector flags ``score > t``
    (``defect_mask``, the service, ``evaluate``). Halfway down to the next lower score flags
    exactly the same scores under ``>``. In float32: the precision the maps are compared in."""
    t = np.float32(threshold)
    below = scores[scores < threshold]
    if below.size == 0:
        return float(np.nextafter(t, np.float32(-np.inf)))
    lower = np.float32(below.max())
    middle = np.float32((float(lower) + float(t)) / 2)
    return float(middle if middle < t else lower)
