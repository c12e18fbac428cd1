"""Calibrated decision thresholds and the score normalisation that travels with them.

Thresholds are set on held-out normal images only (a high quantile of their image scores and of
their pixel values), so that no test label ever leaks into them. The normalised score is a logistic
function of the raw score centred on the image threshold, so a client reads 0.5 as "at the
threshold" whatever the category and the anomaly map's units.
"""

import math
from dataclasses import asdict, dataclass, field

import torch


@dataclass(frozen=True)
class Calibration:
    """Thresholds of one checkpoint.

    Args:
        pixel_threshold: anomaly-map value above which a pixel belongs to the defect mask.
        image_threshold: image score above which an image is anomalous.
        score_scale: spread of the logistic normalisation (raw-score units); > 0.
        method: how the thresholds were derived, e.g. "normal-quantile" or "f1-optimal (optimistic)".
        details: the parameters and the data they came from (quantiles, number of images).
    """

    pixel_threshold: float
    image_threshold: float
    score_scale: float
    method: str = "normal-quantile"
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("pixel_threshold", "image_threshold", "score_scale"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Calibration.{name} must be finite, got {getattr(self, name)}")
        if self.score_scale <= 0:
            raise ValueError(f"Calibration.score_scale must be > 0, got {self.score_scale}")

    def normalize(self, scores: torch.Tensor) -> torch.Tensor:
        """Raw scores → [0, 1], with the image threshold at exactly 0.5."""
        return torch.sigmoid((scores - self.image_threshold) / self.score_scale)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(**data)


def pixel_quantile_of(pixel_values: torch.Tensor, quantile: float) -> float:
    """The ``quantile`` of anomaly-map values, any shape (a seeded subsample beyond 2**24 values,
    torch.quantile's limit, keeps it exact enough)."""
    pixels = pixel_values.double().flatten()
    if pixels.numel() > 2**24:
        generator = torch.Generator().manual_seed(0)
        pixels = pixels[torch.randperm(pixels.numel(), generator=generator)[: 2**24]]
    return float(torch.quantile(pixels, quantile))


def from_normal_scores(
    image_scores: torch.Tensor,
    pixel_values: torch.Tensor,
    image_quantile: float = 0.99,
    pixel_quantile: float = 0.999,
) -> Calibration:
    """Thresholds from normal validation data alone.

    Args:
        image_scores: (N,) image scores of normal images.
        pixel_values: anomaly-map values of the same normal images, any shape.
        image_quantile: quantile of the image scores that becomes the image threshold.
        pixel_quantile: quantile of the pixel values that becomes the pixel threshold.
    Returns:
        A Calibration whose logistic scale is the spread of the normal scores, so that a normal
        image typically reads well below 0.5 and a clear defect close to 1.
    """
    for name, q in (("image_quantile", image_quantile), ("pixel_quantile", pixel_quantile)):
        if not 0 < q < 1:
            raise ValueError(f"{name} must be in (0, 1), got {q}")
    if image_scores.numel() < 2:
        raise ValueError("calibration needs at least 2 normal validation images")
    scores = image_scores.double().flatten()
    image_threshold = float(torch.quantile(scores, image_quantile))
    pixel_threshold = pixel_quantile_of(pixel_values, pixel_quantile)
    spread = float(scores.std()) if scores.numel() > 1 else 0.0
    score_scale = max(spread, 1e-3 * abs(image_threshold), 1e-12)
    return Calibration(
        pixel_threshold=pixel_threshold,
        image_threshold=image_threshold,
        score_scale=score_scale,
        method="normal-quantile",
        details={
            "image_quantile": image_quantile,
            "pixel_quantile": pixel_quantile,
            "normal_images": int(scores.numel()),
            "normal_score_mean": float(scores.mean()),
            "normal_score_std": spread,
        },
    )
