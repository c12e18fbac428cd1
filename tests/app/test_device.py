"""Device resolution: auto picks CUDA only when it is there; asking for a missing GPU, or for bfloat16
where the device would only emulate it, stops the start."""

import pytest
import torch

import models.precision
from app.device import resolve_device, resolve_precision
from app.settings import SettingsError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_names_the_setting():
    with pytest.raises(SettingsError, match="INSPECT_DEVICE=cuda:0: CUDA is not available"):
        resolve_device("cuda:0")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_out_of_range():
    with pytest.raises(SettingsError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_float32_runs_anywhere_and_bfloat16_only_where_native(monkeypatch):
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: False)
    assert resolve_precision("float32", torch.device("cpu")) == "float32"
    with pytest.raises(SettingsError, match=r"INSPECT_PRECISION=bfloat16: cpu does not .* use float32"):
        resolve_precision("bfloat16", torch.device("cpu"))
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: True)
    assert resolve_precision("bfloat16", torch.device("cpu")) == "bfloat16"
