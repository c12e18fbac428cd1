"""Evaluation of a checkpoint on a category's labelled test set, with the MVTec AD metrics.

Image level: AUROC and F1-max of the image score. Pixel level, at the ground-truth masks' own
resolution: AUROC, AUPRO up to FPR 0.3 (Bergmann et al., IJCV 2021) and F1-max. Operational
figures at the checkpoint's own calibrated thresholds: image precision/recall/accuracy and pixel
IoU. Everything overall and per defect type (that type's images together with the good ones).
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from models.checkpoint import Checkpoint
from models.preprocess import Box, to_image_size
from training.data import CategoryIndex, load_as_checkpoint, read_mask
from training.inference import score_images
from training.metrics import aupro, auroc, binary_stats, f1_max, iou

HEADLINE = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")


@dataclass
class EvaluationRun:
    """Everything the report needs: metrics and the per-image arrays they came from."""

    metrics: dict
    defects: list[str]  # per test image: "good" or its defect type
    scores: np.ndarray  # (N,) image scores
    images: torch.Tensor  # (N, C, S, S) model inputs
    reconstructions: torch.Tensor  # (N, C, S, S)
    maps: list[np.ndarray]  # per image, at the ground truth's resolution
    masks: list[np.ndarray]  # per image ground truth (all False for good images)
    resize: str = "stretch"  # how the images became model inputs (``models.preprocess``)
    roi: Box | None = None  # the box of each image that became its model input; maps are zero outside


def ground_truth(index: CategoryIndex) -> list[np.ndarray]:
    masks = []
    for sample in index.test:
        if sample.mask_path is not None:
            masks.append(read_mask(sample.mask_path))
        else:
            with Image.open(sample.path) as image:
                masks.append(np.zeros((image.height, image.width), dtype=bool))
    return masks


def _metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: list[np.ndarray],
    masks: list[np.ndarray],
    image_threshold: float,
    pixel_threshold: float,
) -> dict:
    pixel_scores = np.concatenate([m.ravel() for m in maps])
    pixel_labels = np.concatenate([m.ravel() for m in masks])
    image_f1, _ = f1_max(labels, scores)
    pixel_f1, _ = f1_max(pixel_labels, pixel_scores)
    image_ops = binary_stats(labels, scores > image_threshold)
    pixel_ops = binary_stats(pixel_labels, pixel_scores > pixel_threshold)
    return {
        "image_auroc": auroc(labels, scores),
        "pixel_auroc": auroc(pixel_labels, pixel_scores),
        "aupro": aupro(masks, maps, fpr_limit=0.3),
        "image_f1_max": image_f1,
        "pixel_f1_max": pixel_f1,
        "image_precision": image_ops["precision"],
        "image_recall": image_ops["recall"],
        "image_accuracy": image_ops["accuracy"],
        "image_f1_at_threshold": image_ops["f1"],
        "pixel_precision": pixel_ops["precision"],
        "pixel_recall": pixel_ops["recall"],
        "pixel_f1_at_threshold": pixel_ops["f1"],
        "pixel_iou": iou(masks, [m > pixel_threshold for m in maps]),
        "images": len(labels),
        "anomalous_images": int(labels.sum()),
    }


def metrics_by_defect(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: list[np.ndarray],
    masks: list[np.ndarray],
    defects: list[str],
    defect_types: list[str],
    image_threshold: float,
    pixel_threshold: float,
) -> dict:
    """The metrics overall, and under ``per_defect`` for each defect type with the good images."""
    per_defect = {}
    for defect in defect_types:
        keep = [i for i, d in enumerate(defects) if d in ("good", defect)]
        per_defect[defect] = _metrics(
            scores[keep],
            labels[keep],
            [maps[i] for i in keep],
            [masks[i] for i in keep],
            image_threshold,
            pixel_threshold,
        )
    overall = _metrics(scores, labels, maps, masks, image_threshold, pixel_threshold)
    return {**overall, "per_defect": per_defect}


def evaluate(
    checkpoint: Checkpoint, index: CategoryIndex, device: torch.device, precision: str = "float32"
) -> EvaluationRun:
    """Score every test image with the checkpoint, its networks in ``precision`` (``models.precision``:
    what a service with that INSPECT_PRECISION answers), and compute the metrics."""
    if not any(s.is_anomalous for s in index.test) or all(s.is_anomalous for s in index.test):
        raise ValueError(f"{index.root / 'test'} needs both good and defective images to evaluate")
    images = load_as_checkpoint([s.path for s in index.test], checkpoint)
    scores_t, maps_t, recons = score_images(checkpoint.detector, images, device, precision=precision)
    masks = ground_truth(index)
    maps = [
        to_image_size(m, mask.shape[0], mask.shape[1], checkpoint.resize, checkpoint.roi).numpy()
        for m, mask in zip(maps_t, masks, strict=True)
    ]
    scores = scores_t.numpy().astype(np.float64)
    defects = [s.defect for s in index.test]
    labels = np.array([s.is_anomalous for s in index.test])
    cal = checkpoint.calibration
    metrics = metrics_by_defect(
        scores, labels, maps, masks, defects, index.defect_types, cal.image_threshold, cal.pixel_threshold
    )
    metrics = {
        **metrics,
        "thresholds": {
            "image_threshold": cal.image_threshold,
            "pixel_threshold": cal.pixel_threshold,
            "method": cal.method,
        },
        "category": index.category,
        "checkpoint": str(checkpoint.path),
        "precision": precision,
    }
    return EvaluationRun(
        metrics, defects, scores, images, recons, maps, masks, checkpoint.resize, checkpoint.roi
    )
