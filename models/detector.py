"""The complete anomaly detector of one category: image in, anomaly map and image score out.

It joins the reconstruction model (``models.cae``), the optional discriminative head
(``models.head``) and the scoring (``models.scoring``) into one module, so that training,
evaluation and the service all run exactly the same computation.
"""

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from models.cae import CAE, CAEConfig
from models.head import DiscriminativeHead, HeadConfig
from models.scoring import ScoringConfig, anomaly_map, image_score, smooth


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and scoring of a detector; the checkpoint rebuilds it from ``to_dict()``."""

    cae: CAEConfig = field(default_factory=CAEConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    head: HeadConfig | None = None  # with a head, the map is the head's segmentation

    def __post_init__(self) -> None:
        uses_head = self.scoring.anomaly_map == "head"
        if uses_head != (self.head is not None):
            raise ValueError(
                "DetectorConfig: scoring.anomaly_map 'head' needs a head config and a head needs it "
                f"(anomaly_map={self.scoring.anomaly_map!r}, head={'set' if self.head else 'none'})"
            )

    def to_dict(self) -> dict:
        return {
            "cae": asdict(self.cae),
            "scoring": asdict(self.scoring),
            "head": asdict(self.head) if self.head else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DetectorConfig":
        head = data.get("head")
        return cls(
            cae=CAEConfig(**data["cae"]),
            scoring=ScoringConfig(**data["scoring"]),
            head=HeadConfig(**head) if head else None,
        )

    @property
    def input_size(self) -> int:
        return self.cae.input_size

    @property
    def channels(self) -> int:
        return self.cae.in_channels


class DetectorOutput(NamedTuple):
    reconstruction: torch.Tensor  # (B, C, S, S)
    anomaly_map: torch.Tensor  # (B, S, S)
    image_score: torch.Tensor  # (B,)


class AnomalyDetector(nn.Module):
    """Reconstruct, compare (or segment), score.

    Args:
        config: architecture and scoring.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.cae = CAE(config.cae)
        self.head = DiscriminativeHead(config.head, config.channels) if config.head else None

    def segment(self, images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """The raw (unsmoothed) anomaly map: the head's probabilities or the reconstruction error."""
        if self.head is not None:
            return torch.sigmoid(self.head(images, reconstruction).float())  # (B, S, S)
        return anomaly_map(images, reconstruction, self.config.scoring, smoothing=False)

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        """Args: images (B, C, S, S) in [0, 1]. Returns reconstruction, anomaly map, image score."""
        reconstruction = self.cae(images)  # (B, C, S, S)
        amap = smooth(self.segment(images, reconstruction), self.config.scoring.smoothing_sigma)
        return DetectorOutput(reconstruction, amap, image_score(amap, self.config.scoring))
