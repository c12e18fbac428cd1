"""The torch device the service runs its models on, and the precision its networks compute in,
resolved from the ``INSPECT_DEVICE`` and ``INSPECT_PRECISION`` settings."""

import torch

from app.settings import SettingsError
from models.precision import check_precision


def resolve_device(setting: str) -> torch.device:
    """``auto`` → the first CUDA device when one is available, else the CPU; ``cpu``, ``cuda``, ``cuda:N``.

    Raises:
        SettingsError: a CUDA device was asked for and is not there.
    """
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"INSPECT_DEVICE={setting}: CUDA is not available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(
                f"INSPECT_DEVICE={setting}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return device


def resolve_precision(setting: str, device: torch.device) -> str:
    """``float32``, or ``bfloat16`` where ``device`` computes it natively.

    Raises:
        SettingsError: bfloat16 on a device that would only emulate it, slower than float32.
    """
    try:
        return check_precision(setting, device)
    except ValueError as err:
        raise SettingsError(f"INSPECT_PRECISION={setting}: {err}; use float32") from None
