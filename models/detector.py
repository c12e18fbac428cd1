"""The complete anomaly detector of one category: image in, anomaly map and image score out.

It joins the reconstruction model (``models.cae``), the optional discriminative head
(``models.head``) and the scoring (``models.scoring``) into one module, so that training,
evaluation and the service all run exactly the same computation.
"""

from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import torch
from torch import nn

from models.cae import CAE, CAEConfig
from models.head import DiscriminativeHead, HeadConfig
from models.scoring import (
    FUSED_MAP,
    HEAD_MAPS,
    ScoringConfig,
    anomaly_map,
    image_score,
    reconstruction_map,
    smooth,
)


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and scoring of a detector; the checkpoint rebuilds it from ``to_dict()``."""

    cae: CAEConfig = field(default_factory=CAEConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    head: HeadConfig | None = None  # with a head, the map is the head's segmentation (or fused with it)

    def __post_init__(self) -> None:
        uses_head = self.scoring.anomaly_map in HEAD_MAPS
        if uses_head != (self.head is not None):
            raise ValueError(
                f"DetectorConfig: scoring.anomaly_map {HEAD_MAPS} needs a head config and a head needs "
                f"one of them (anomaly_map={self.scoring.anomaly_map!r}, head={'set' if self.head else 'none'})"
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

    With the fused map (``head+ssim+gms``) the detector holds ``map_scales``, a (2,) buffer: the
    normal high quantiles of the smoothed head map and of the smoothed SSIM+MSGMS map. They are
    data, not architecture: calibration sets them (``set_map_scales``) and the checkpoint carries
    them with the weights.
    """

    map_scales: torch.Tensor  # fused map only: (head, SSIM+MSGMS) normal high quantiles

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.cae = CAE(config.cae)
        self.head = DiscriminativeHead(config.head, config.channels) if config.head else None
        self.fused = config.scoring.anomaly_map == FUSED_MAP
        if self.fused:
            self.register_buffer("map_scales", torch.ones(2))

    def fused_parts(
        self, images: torch.Tensor, reconstruction: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused map's two raw parts: head probability and SSIM+MSGMS map, each (B, S, S)."""
        assert self.head is not None, "the fused map needs a head (DetectorConfig checks it)"
        probability = torch.sigmoid(self.head(images, reconstruction).float())
        error = reconstruction_map(images.float(), reconstruction.float(), "ssim+gms", self.config.scoring)
        return probability, error

    def set_map_scales(self, head_scale: float, reconstruction_scale: float) -> None:
        """Calibrate the fused map: each part is divided by its own normal high quantile."""
        if not self.fused:
            raise ValueError(f"map scales belong to the fused map, not {self.config.scoring.anomaly_map!r}")
        if not (head_scale > 0 and reconstruction_scale > 0):
            raise ValueError(f"map scales must be > 0, got {head_scale} and {reconstruction_scale}")
        self.map_scales.copy_(torch.tensor([head_scale, reconstruction_scale]))

    def segment(self, images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """The raw (unsmoothed) anomaly map: the head's probabilities, the reconstruction error, or both."""
        if self.fused:
            probability, error = self.fused_parts(images, reconstruction)
            return 0.5 * (probability / self.map_scales[0] + error / self.map_scales[1])
        if self.head is not None:
            return torch.sigmoid(self.head(images, reconstruction).float())  # (B, S, S)
        return anomaly_map(images, reconstruction, self.config.scoring, smoothing=False)

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        """Args: images (B, C, S, S) in [0, 1]. Returns reconstruction, anomaly map, image score."""
        reconstruction = self.cae(images)  # (B, C, S, S)
        amap = smooth(self.segment(images, reconstruction), self.config.scoring.smoothing_sigma)
        return DetectorOutput(reconstruction, amap, image_score(amap, self.config.scoring))


def with_anomaly_map(detector: AnomalyDetector, kind: str) -> AnomalyDetector:
    """The same trained weights scored with another anomaly map (uncalibrated, on the CPU).

    A head map keeps the head; a reconstruction map drops it (the CAE alone). Fused map scales
    start at 1: calibrate the result before using its thresholds.
    """
    if kind in HEAD_MAPS and detector.head is None:
        raise ValueError(f"anomaly map {kind!r} needs a discriminative head, and this detector has none")
    config = detector.config
    head = config.head if kind in HEAD_MAPS else None
    rebuilt = AnomalyDetector(replace(config, scoring=replace(config.scoring, anomaly_map=kind), head=head))
    rebuilt.cae.load_state_dict(detector.cae.state_dict())
    if rebuilt.head is not None:
        rebuilt.head.load_state_dict(detector.head.state_dict())  # type: ignore[union-attr]
    return rebuilt.eval()
