"""The torch device the service runs its models on, resolved from the ``INSPECT_DEVICE`` setting."""

import torch

from app.settings import SettingsError


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
