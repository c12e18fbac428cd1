"""One checkpoint file per category: safetensors tensors plus JSON metadata, never pickle.

The tensors are the detector's state dict. The safetensors header holds one metadata entry,
``sspcab_inspect``, a JSON object with the format version, the category, the detector config,
the preprocessing, the calibration, the training summary, the evaluation metrics when known, and
the creation time. Anything missing or malformed fails with a ``CheckpointError`` that names the
file and what is wrong, so an operator can act on it.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from models.calibration import Calibration
from models.detector import AnomalyDetector, DetectorConfig
from models.preprocess import Box, crop_roi, to_model_input

FORMAT_VERSION = 1
METADATA_KEY = "sspcab_inspect"
COLOR_MODES = ("RGB", "L")
REQUIRED_KEYS = ("format_version", "category", "model", "preprocessing", "calibration")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Checkpoint:
    """A loaded checkpoint: the detector (eval mode, on its device) and its metadata."""

    path: Path
    detector: AnomalyDetector
    calibration: Calibration
    metadata: dict[str, Any]

    @property
    def category(self) -> str:
        return self.metadata["category"]

    @property
    def input_size(self) -> int:
        return self.detector.config.input_size

    @property
    def resize(self) -> str:
        return self.detector.config.resize

    @property
    def exposure_mean(self) -> float | None:
        return self.detector.config.exposure_mean

    @property
    def roi(self) -> Box | None:
        return self.detector.config.roi

    @property
    def color_mode(self) -> str:
        return self.metadata["preprocessing"]["color_mode"]

    def model_input(self, images: Sequence[torch.Tensor], device: torch.device | None = None) -> torch.Tensor:
        """(H, W, C) uint8 images to this detector's (B, C, S, S) input on ``device`` (default: the
        images'): ``to_model_input`` with the size, resize, exposure level and region of interest
        the checkpoint was trained with. The region is cut out before the move, so only its pixels
        cross to the device."""
        crops = [crop_roi(image, self.roi) for image in images]
        if device is not None:
            crops = [crop.to(device, non_blocking=True) for crop in crops]
        return to_model_input(crops, self.input_size, self.resize, self.exposure_mean)


def preprocessing_for(config: DetectorConfig) -> dict:
    return {
        "input_size": config.input_size,
        "color_mode": "RGB" if config.channels == 3 else "L",
        "resize": config.resize,
        "exposure_mean": config.exposure_mean,
        "roi": list(config.roi) if config.roi else None,
        "interpolation": "bilinear, antialiased",
        "value_range": [0.0, 1.0],
    }


def save_checkpoint(
    path: Path | str,
    detector: AnomalyDetector,
    *,
    category: str,
    calibration: Calibration,
    training: dict | None = None,
    evaluation: dict | None = None,
) -> Path:
    """Write ``detector`` and its metadata to ``path`` (a .safetensors file); returns the path."""
    path = Path(path)
    metadata = {
        "format_version": FORMAT_VERSION,
        "category": category,
        "model": detector.config.to_dict(),
        "preprocessing": preprocessing_for(detector.config),
        "calibration": calibration.to_dict(),
        "training": training or {},
        "evaluation": evaluation,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in detector.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
    # safetensors creates the file owner-only (0600); a checkpoint is meant to be read by the
    # service, which runs as another user in its container (10001), so make it world-readable.
    tmp.chmod(0o644)
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint
    return path


def read_metadata(path: Path | str) -> dict[str, Any]:
    """The checkpoint's metadata alone, validated (the tensors are not read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(path, f"not a readable safetensors file ({err})") from None
    if raw is None:
        raise CheckpointError(path, f"no '{METADATA_KEY}' metadata in the safetensors header")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(path, f"metadata is not valid JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "metadata is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise CheckpointError(path, f"metadata misses {', '.join(missing)}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"format version {metadata['format_version']!r} is not supported "
            f"(this build reads version {FORMAT_VERSION})",
        )
    return metadata


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint onto ``device`` in eval mode; raises CheckpointError on any defect."""
    path = Path(path)
    metadata = read_metadata(path)
    try:
        config = DetectorConfig.from_dict(metadata["model"])
        calibration = Calibration.from_dict(metadata["calibration"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"invalid model or calibration metadata ({err})") from None
    if metadata["preprocessing"].get("color_mode") not in COLOR_MODES:
        raise CheckpointError(path, f"preprocessing.color_mode must be one of {COLOR_MODES}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(path, f"tensors cannot be read ({err})") from None
    detector = AnomalyDetector(config)
    expected = detector.state_dict()
    # load_state_dict raises a multi-line RuntimeError on a shape mismatch; name it here instead.
    wrong = [
        f"{key} {tuple(tensor.shape)} (the model expects {tuple(expected[key].shape)})"
        for key, tensor in state.items()
        if key in expected and tensor.shape != expected[key].shape
    ]
    if wrong:
        raise CheckpointError(path, f"tensors of the wrong shape: {', '.join(wrong[:5])}")
    result = detector.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        problems = []
        if result.missing_keys:
            problems.append(f"missing tensors {result.missing_keys[:5]}")
        if result.unexpected_keys:
            problems.append(f"unexpected tensors {result.unexpected_keys[:5]}")
        raise CheckpointError(path, "; ".join(problems))
    detector.to(device).eval()
    return Checkpoint(path=path, detector=detector, calibration=calibration, metadata=metadata)
