"""Batched detector inference over in-memory images, for calibration and evaluation."""

import torch

from models.detector import AnomalyDetector
from models.precision import network_precision


@torch.no_grad()
def score_images(
    detector: AnomalyDetector,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 32,
    precision: str = "float32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the detector on (N, C, S, S) images, its networks in ``precision`` (``models.precision``).

    Returns:
        image scores (N,), anomaly maps (N, S, S) and reconstructions (N, C, S, S), on the CPU.
    """
    detector.eval().to(device)
    scores, maps, recons = [], [], []
    for start in range(0, images.shape[0], batch_size):
        with network_precision(precision, device):
            out = detector(images[start : start + batch_size].to(device))
        scores.append(out.image_score.float().cpu())
        maps.append(out.anomaly_map.float().cpu())
        recons.append(out.reconstruction.float().cpu())
    return torch.cat(scores), torch.cat(maps), torch.cat(recons)
