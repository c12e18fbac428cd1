"""The complete anomaly detector of one category: image in, anomaly map and image score out.

It joins the reconstruction model (``models.cae``), the optional discriminative head
(``models.head``), the optional texture memory (``models.texture_memory``) and the scoring
(``models.scoring``) into one module, so that training, evaluation and the service all run
exactly the same computation.
"""

import math
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import torch
from torch import nn

from models.cae import CAE, CAEConfig
from models.flips import flip_views, merge_views
from models.head import DiscriminativeHead, HeadConfig
from models.precision import float32_scoring
from models.preprocess import RESIZE_MODES, Box, check_roi
from models.scoring import (
    FUSED_MAP,
    HEAD_MAPS,
    ScoringConfig,
    anomaly_map,
    image_score,
    reconstruction_map,
    smooth,
)
from models.texture_memory import TextureConfig, TextureMemory


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and scoring of a detector; the checkpoint rebuilds it from ``to_dict()``."""

    cae: CAEConfig = field(default_factory=CAEConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    head: HeadConfig | None = None  # with a head, the map is the head's segmentation (or fused with it)
    texture: TextureConfig | None = None  # fused map only: a texture memory joins the pixel map
    resize: str = "stretch"  # how an image fits the square input (``models.preprocess.RESIZE_MODES``)
    # Side of the square an image is resized to, when larger than the CAE's input: the CAE, head
    # and texture memory are fully convolutional, so they score the whole larger square at once,
    # having trained on CAE-sized crops of it (``training.fit.random_crops``). A defect keeps more
    # pixels at the same cost per training step. None: the CAE's input size, no crops.
    image_size: int | None = None
    # Exposure normalisation (``models.preprocess.normalize_exposure``): each image is scaled to this
    # mean intensity in (0, 1), the training images' mean (``fit --normalize-exposure``). None: off.
    exposure_mean: float | None = None
    # Region of interest (``models.preprocess``): only this box of every image, as fractions of its
    # width and height (left, top, right, bottom), is inspected (``fit --roi``). None: the whole image.
    roi: Box | None = None

    def __post_init__(self) -> None:
        if self.roi is not None:  # JSON gives a list
            try:
                object.__setattr__(self, "roi", check_roi(self.roi))
            except ValueError as err:
                raise ValueError(f"DetectorConfig.roi: {err}") from None
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"DetectorConfig.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.exposure_mean is not None and not 0 < self.exposure_mean < 1:
            raise ValueError(
                f"DetectorConfig.exposure_mean must be in (0, 1) or None, got {self.exposure_mean}"
            )
        if self.image_size is not None:
            stride = math.prod(self.cae.pools)
            if self.image_size < self.cae.input_size or self.image_size % stride:
                raise ValueError(
                    f"DetectorConfig.image_size must be at least the CAE's input size "
                    f"({self.cae.input_size}) and a multiple of {stride} (the product of its pools), "
                    f"got {self.image_size}; try {max(self.cae.input_size, round(self.image_size / stride) * stride)}"
                )
        if self.head is not None and self.head.padding == "reflect":
            side = self.cae.input_size  # the smallest square the head sees (training's crops)
            for _ in self.head.widths[1:]:
                side = -(-side // 2)  # its max-pools round up
            if side < 2:
                raise ValueError(
                    f"DetectorConfig: a head with padding reflect needs at least 2×2 pixels at its "
                    f"bottom level, and {len(self.head.widths)} levels leave {side}×{side} of a "
                    f"{self.cae.input_size}² input"
                )
        uses_head = self.scoring.anomaly_map in HEAD_MAPS
        if uses_head != (self.head is not None):
            raise ValueError(
                f"DetectorConfig: scoring.anomaly_map {HEAD_MAPS} needs a head config and a head needs "
                f"one of them (anomaly_map={self.scoring.anomaly_map!r}, head={'set' if self.head else 'none'})"
            )
        if self.texture is not None and self.scoring.anomaly_map != FUSED_MAP:
            raise ValueError(
                f"DetectorConfig: a texture memory joins the fused map {FUSED_MAP!r} only, "
                f"not {self.scoring.anomaly_map!r}"
            )

    def to_dict(self) -> dict:
        return {
            "cae": asdict(self.cae),
            "scoring": asdict(self.scoring),
            "head": asdict(self.head) if self.head else None,
            "texture": asdict(self.texture) if self.texture else None,
            "resize": self.resize,
            "image_size": self.image_size,
            "exposure_mean": self.exposure_mean,
            "roi": list(self.roi) if self.roi else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DetectorConfig":
        head, texture = data.get("head"), data.get("texture")  # older checkpoints have neither key
        return cls(
            cae=CAEConfig(**data["cae"]),
            scoring=ScoringConfig(**data["scoring"]),
            head=HeadConfig(**head) if head else None,
            texture=TextureConfig(**texture) if texture else None,
            resize=data.get("resize", "stretch"),  # the only resize before letterboxing existed
            image_size=data.get("image_size"),  # older checkpoints score at the CAE's input size
            exposure_mean=data.get("exposure_mean"),  # older checkpoints take images as they are
            roi=data.get("roi"),  # older checkpoints inspect the whole image
        )

    @property
    def input_size(self) -> int:
        """Side of the square every image is resized to before the detector sees it."""
        return self.image_size or self.cae.input_size

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
    normal high quantiles of the smoothed head map and of the smoothed SSIM+MSGMS map — (3,) with
    a texture memory, whose distance map is the third part. They are data, not architecture:
    calibration sets them (``set_map_scales``) and the checkpoint carries them with the weights.

    With a texture memory the pixel map is the mean of the three scaled parts (the texture part
    capped at ``TextureConfig.fused_cap``), and the image score is taken from the mean of the first
    two alone: texture distance ranks the *pixels* of a defect well, but every normal image has some
    patch unlike the memory, so its per-image maximum does not rank *images* (on texture alone, tire
    image AUROC 0.47–0.56 over the descriptors tried; BENCHMARKS.md §2).
    """

    map_scales: torch.Tensor  # fused map only: (head, SSIM+MSGMS[, texture]) normal high quantiles

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.cae = CAE(config.cae)
        self.head = DiscriminativeHead(config.head, config.channels) if config.head else None
        self.texture = TextureMemory(config.texture, config.channels) if config.texture else None
        self.fused = config.scoring.anomaly_map == FUSED_MAP
        if self.fused:
            self.register_buffer("map_scales", torch.ones(3 if self.texture is not None else 2))

    def fused_parts(
        self, images: torch.Tensor, reconstruction: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused map's two raw parts: head probability and SSIM+MSGMS map, each (B, S, S)."""
        assert self.head is not None, "the fused map needs a head (DetectorConfig checks it)"
        logits = self.head(images, reconstruction)
        with float32_scoring(images):
            probability = torch.sigmoid(logits.float())
            error = reconstruction_map(
                images.float(), reconstruction.float(), "ssim+gms", self.config.scoring
            )
        return probability, error

    def set_map_scales(self, *scales: float) -> None:
        """Calibrate the fused map: each part (head, SSIM+MSGMS[, texture]) is divided by its own
        normal high quantile."""
        if not self.fused:
            raise ValueError(f"map scales belong to the fused map, not {self.config.scoring.anomaly_map!r}")
        if len(scales) != self.map_scales.numel():
            raise ValueError(f"this fused map has {self.map_scales.numel()} parts, got {len(scales)} scales")
        if not all(scale > 0 for scale in scales):
            raise ValueError(f"map scales must be > 0, got {scales}")
        self.map_scales.copy_(torch.tensor(scales))

    def segment(self, images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """The raw (unsmoothed) map the image score comes from: the head's probabilities, the
        reconstruction error, or both (without the texture part, which ``forward`` adds)."""
        if self.fused:
            probability, error = self.fused_parts(images, reconstruction)
            return 0.5 * (probability / self.map_scales[0] + error / self.map_scales[1])
        if self.head is not None:
            return torch.sigmoid(self.head(images, reconstruction).float())  # (B, S, S)
        with float32_scoring(images):
            return anomaly_map(images.float(), reconstruction.float(), self.config.scoring, smoothing=False)

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        """Args: images (B, C, S, S) in [0, 1]. Returns reconstruction, anomaly map, image score.

        With test-time flips the CAE and the map run once on all views of the batch, and the
        unflipped maps are averaged; the reconstruction returned is the unflipped image's.

        Inside a caller's bfloat16 autocast (``models.precision.network_precision``) only the CAE and
        the head compute in bfloat16; the maps, the score and the outputs are float32.
        """
        flips = self.config.scoring.test_time_flips
        views = flip_views(images, flips)  # (V·B, C, S, S)
        reconstructions = self.cae(views)
        part = self.segment(views, reconstructions)  # float32
        with float32_scoring(images):
            sigma = self.config.scoring.smoothing_sigma
            amap = smooth(merge_views(part, flips), sigma)
            score = image_score(amap, self.config.scoring)
            reconstruction = reconstructions[: images.shape[0]].float()  # (B, C, S, S)
            # The texture part joins the pixel map, not the image score. It is not flipped: its
            # descriptors (box means of brightness, contrast and gradient magnitudes) are the same
            # for a flipped image, flipped, so a flipped view would add nothing.
            if self.texture is not None:
                texture = smooth(self.texture(images.float()) / self.map_scales[2], sigma)
                texture = texture.clamp_max(self.texture.config.fused_cap)
                amap = (2 * amap + texture) / 3  # the mean of the three scaled parts
        return DetectorOutput(reconstruction, amap, score)


def with_anomaly_map(detector: AnomalyDetector, kind: str) -> AnomalyDetector:
    """The same trained weights scored with another anomaly map (uncalibrated, on the CPU).

    A head map keeps the head; a reconstruction map drops it (the CAE alone). The fused map keeps
    the texture memory; any other map drops it. Fused map scales start at 1: calibrate the result
    before using its thresholds.
    """
    if kind in HEAD_MAPS and detector.head is None:
        raise ValueError(f"anomaly map {kind!r} needs a discriminative head, and this detector has none")
    config = detector.config
    head = config.head if kind in HEAD_MAPS else None
    texture = config.texture if kind == FUSED_MAP else None
    scoring = replace(config.scoring, anomaly_map=kind)
    return _rebuilt(detector, replace(config, scoring=scoring, head=head, texture=texture))


def with_texture(detector: AnomalyDetector, texture: TextureConfig | None) -> AnomalyDetector:
    """The same trained weights with a new, empty texture memory (or none); fused map only.

    Fill the memory (``detector.texture.remember``) and calibrate the result before using it.
    """
    return _rebuilt(detector, replace(detector.config, texture=texture))


def with_test_time_flips(detector: AnomalyDetector, flips: tuple[str, ...]) -> AnomalyDetector:
    """The same trained weights (and texture memory) scored over other flipped views; calibrate the
    result before using its thresholds."""
    scoring = replace(detector.config.scoring, test_time_flips=flips)
    return _rebuilt(detector, replace(detector.config, scoring=scoring))


def _rebuilt(detector: AnomalyDetector, config: DetectorConfig) -> AnomalyDetector:
    """A detector of ``config`` with ``detector``'s trained CAE and head (uncalibrated, on the CPU);
    a texture memory of the same configuration is kept."""
    rebuilt = AnomalyDetector(config)
    rebuilt.cae.load_state_dict(detector.cae.state_dict())
    if rebuilt.head is not None:
        rebuilt.head.load_state_dict(detector.head.state_dict())  # type: ignore[union-attr]
    if (
        rebuilt.texture is not None
        and detector.texture is not None
        and detector.config.texture == config.texture
    ):
        rebuilt.texture.load_state_dict(detector.texture.state_dict())
    return rebuilt.eval()
