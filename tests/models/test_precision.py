"""Tests for models/precision.py: which devices compute bfloat16 natively, and that a bfloat16 detector
call runs its networks in bfloat16 and its maps and scores in float32."""

import pytest
import torch

import models.precision as precision_module
from models.cae import CAEConfig
from models.detector import AnomalyDetector, DetectorConfig
from models.head import HeadConfig
from models.precision import check_precision, native_bfloat16, network_precision
from models.scoring import ScoringConfig, anomaly_map
from tests.models.test_texture_memory import texture_detector

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("capabilities", "native"),
    [
        ({"amx_bf16": True, "avx512_bf16": False}, True),
        ({"amx_bf16": False, "avx512_bf16": True}, True),
        ({"amx_bf16": False, "avx512_bf16": False, "avx2": True}, False),
        ({}, False),  # a torch that reports nothing is not assumed to have it
    ],
)
def test_a_cpu_computes_bfloat16_natively_only_with_amx_or_avx512_bf16(monkeypatch, capabilities, native):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert native_bfloat16(CPU) is native
    assert native_bfloat16(torch.device("meta")) is False


@pytest.mark.parametrize("native", [True, False])
def test_a_gpu_computes_bfloat16_natively_when_torch_says_so_without_emulation(monkeypatch, native):
    asked = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert native_bfloat16(torch.device("cuda")) is native
    assert asked == [False]  # emulated bfloat16 (a pre-Ampere GPU) does not count


def test_float32_runs_anywhere_and_bfloat16_only_where_native(monkeypatch):
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda device: False)
    assert check_precision("float32", CPU) == "float32"
    with pytest.raises(ValueError, match="cpu does not compute bfloat16 natively"):
        check_precision("bfloat16", CPU)
    with pytest.raises(ValueError, match="one of"):
        check_precision("float16", CPU)
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda device: True)
    assert check_precision("bfloat16", CPU) == "bfloat16"


def _first_convolution_dtypes(module: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    first = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_bfloat16_runs_the_networks_in_bfloat16_and_returns_float32():
    detector = texture_detector()  # fused map, head and texture memory
    cae_dtypes, head_dtypes = (
        _first_convolution_dtypes(detector.cae),
        _first_convolution_dtypes(detector.head),
    )
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = detector(x)
        with network_precision("bfloat16", CPU):
            half = detector(x)
    assert cae_dtypes == [torch.float32, torch.bfloat16]
    assert head_dtypes == [torch.float32, torch.bfloat16]
    for tensor in half:
        assert tensor.dtype == torch.float32
    assert half.anomaly_map.shape == plain.anomaly_map.shape
    # bfloat16 keeps 8 bits of mantissa: close to the float32 answer, not equal to it.
    assert not torch.equal(half.image_score, plain.image_score)
    torch.testing.assert_close(half.image_score, plain.image_score, rtol=0.05, atol=0.0)


def test_under_bfloat16_the_error_map_is_computed_in_float32_from_the_bfloat16_reconstruction():
    torch.manual_seed(0)
    config = DetectorConfig(
        cae=CAEConfig(input_size=24, in_channels=3, widths=(4, 8), pools=(2,), bottleneck_channels=8),
        scoring=ScoringConfig(anomaly_map="ssim+gms", smoothing_sigma=1.0),
    )
    detector = AnomalyDetector(config).eval()
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), network_precision("bfloat16", CPU):
        output = detector(x)
        reconstruction = detector.cae(x)
    assert reconstruction.dtype == torch.bfloat16
    with torch.inference_mode():  # outside autocast: the float32 map of the same reconstruction
        expected = anomaly_map(x, reconstruction.float(), config.scoring)
    torch.testing.assert_close(output.anomaly_map, expected, rtol=0, atol=0)


def test_float32_is_no_context_at_all():
    detector = AnomalyDetector(
        DetectorConfig(
            cae=CAEConfig(input_size=24, in_channels=1, widths=(4, 8), pools=(2,), bottleneck_channels=8),
            scoring=ScoringConfig(anomaly_map="head"),
            head=HeadConfig(widths=(4, 8, 8)),
        )
    ).eval()
    x = torch.rand(1, 1, 24, 24)
    with torch.inference_mode():
        expected = detector(x)
        with network_precision("float32", CPU):
            assert not torch.is_autocast_enabled("cpu")
            output = detector(x)
    assert torch.equal(output.anomaly_map, expected.anomaly_map)
