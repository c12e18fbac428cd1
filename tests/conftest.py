"""Shared fixtures: tiny detectors and checkpoints built on the fly (no real weights, no network)."""

from pathlib import Path

import pytest
import torch

from models.cae import CAEConfig
from models.calibration import Calibration
from models.checkpoint import save_checkpoint
from models.detector import AnomalyDetector, DetectorConfig
from models.scoring import ScoringConfig

torch.set_num_threads(1)  # tests are tiny; threads only add contention on small CI machines


def tiny_config(channels: int = 3, input_size: int = 24, **scoring) -> DetectorConfig:
    """A detector small enough to run in milliseconds: two blocks, one pool."""
    cae = CAEConfig(
        input_size=input_size,
        in_channels=channels,
        widths=(4, 8),
        pools=(2,),
        bottleneck_channels=8,
        sspcab=True,
    )
    return DetectorConfig(cae=cae, scoring=ScoringConfig(**{"anomaly_map": "l2", **scoring}))


@pytest.fixture
def tiny_detector() -> AnomalyDetector:
    torch.manual_seed(0)
    return AnomalyDetector(tiny_config()).eval()


def write_tiny_checkpoint(path: Path, category: str = "widget", channels: int = 3, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    detector = AnomalyDetector(tiny_config(channels)).eval()
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    return save_checkpoint(path, detector, category=category, calibration=calibration)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return write_tiny_checkpoint(tmp_path / "widget.safetensors")
