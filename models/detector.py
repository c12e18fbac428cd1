"""The complete anomaly detector of one category: image in, anomaly map and image score out.

It joins the reconstruction model (``models.cae``) and the scoring (``models.scoring``) into one
module, so that training, evaluation and the service all run exactly the same computation.
"""

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from models.cae import CAE, CAEConfig
from models.scoring import ScoringConfig, anomaly_map, image_score


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and scoring of a detector; the checkpoint rebuilds it from ``to_dict()``."""

    cae: CAEConfig = field(default_factory=CAEConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def to_dict(self) -> dict:
        return {"cae": asdict(self.cae), "scoring": asdict(self.scoring)}

    @classmethod
    def from_dict(cls, data: dict) -> "DetectorConfig":
        return cls(cae=CAEConfig(**data["cae"]), scoring=ScoringConfig(**data["scoring"]))

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
    """Reconstruct, compare, score.

    Args:
        config: architecture and scoring.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.cae = CAE(config.cae)

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        """Args: images (B, C, S, S) in [0, 1]. Returns reconstruction, anomaly map, image score."""
        reconstruction = self.cae(images)  # (B, C, S, S)
        amap = anomaly_map(images, reconstruction, self.config.scoring)  # (B, S, S)
        return DetectorOutput(reconstruction, amap, image_score(amap, self.config.scoring))
