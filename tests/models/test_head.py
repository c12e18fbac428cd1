"""Tests for models/head.py and the detector built with it."""

import pytest
import torch

from models.cae import CAEConfig
from models.calibration import Calibration
from models.checkpoint import load_checkpoint, save_checkpoint
from models.detector import AnomalyDetector, DetectorConfig, with_anomaly_map
from models.head import DiscriminativeHead, HeadConfig
from models.scoring import ScoringConfig, reconstruction_map, smooth
from models.sspcab import SSPCAB

FUSED = "head+ssim+gms"


def head_detector(channels: int = 3, size: int = 24, anomaly_map: str = "head") -> AnomalyDetector:
    torch.manual_seed(0)
    config = DetectorConfig(
        cae=CAEConfig(
            input_size=size, in_channels=channels, widths=(4, 8), pools=(2,), bottleneck_channels=8
        ),
        scoring=ScoringConfig(anomaly_map=anomaly_map, smoothing_sigma=1.0),
        head=HeadConfig(widths=(4, 8, 8)),
    )
    return AnomalyDetector(config).eval()


@pytest.mark.parametrize("shape", [(24, 24), (25, 31), (7, 9)])
def test_head_keeps_the_spatial_size_and_reads_both_images(shape):
    head = DiscriminativeHead(HeadConfig(widths=(4, 8, 8)), image_channels=3).eval()
    image, recon = torch.rand(2, 3, *shape), torch.rand(2, 3, *shape)
    logits = head(image, recon)
    assert logits.shape == (2, *shape)
    assert not torch.allclose(logits, head(image, image))  # the reconstruction matters


def test_head_has_sspcab_at_its_bottleneck_only_when_asked():
    assert isinstance(DiscriminativeHead(HeadConfig(), 1).sspcab, SSPCAB)
    assert not any(isinstance(m, SSPCAB) for m in DiscriminativeHead(HeadConfig(sspcab=False), 1).modules())


def test_detector_map_is_the_head_probability_in_0_1():
    detector = head_detector(channels=1)
    with torch.no_grad():
        out = detector(torch.rand(3, 1, 24, 24))
    assert out.anomaly_map.shape == (3, 24, 24)
    assert out.anomaly_map.min() >= 0 and out.anomaly_map.max() <= 1
    assert out.image_score.shape == (3,)


def test_head_and_map_must_come_together():
    with pytest.raises(ValueError, match="head"):
        DetectorConfig(scoring=ScoringConfig(anomaly_map="head"))
    with pytest.raises(ValueError, match="head"):
        DetectorConfig(scoring=ScoringConfig(anomaly_map=FUSED))
    with pytest.raises(ValueError, match="head"):
        DetectorConfig(scoring=ScoringConfig(anomaly_map="l2"), head=HeadConfig())


def test_checkpoint_round_trip_with_the_head(tmp_path):
    detector = head_detector()
    path = save_checkpoint(
        tmp_path / "h.safetensors",
        detector,
        category="h",
        calibration=Calibration(pixel_threshold=0.5, image_threshold=0.5, score_scale=0.1),
    )
    loaded = load_checkpoint(path)
    assert loaded.detector.head is not None
    assert loaded.metadata["model"]["head"]["widths"] == [4, 8, 8]
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        a, b = detector(x), loaded.detector(x)
    assert torch.equal(a.anomaly_map, b.anomaly_map)
    assert torch.equal(a.image_score, b.image_score)


def test_fused_map_is_the_mean_of_both_parts_in_units_of_their_scales():
    detector = head_detector(anomaly_map=FUSED)
    detector.set_map_scales(0.25, 0.5)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        out = detector(x)
        recon = detector.cae(x)
        probability = torch.sigmoid(detector.head(x, recon))
        error = reconstruction_map(x, recon, "ssim+gms", detector.config.scoring)
    expected = smooth(0.5 * (probability / 0.25 + error / 0.5), sigma=1.0)
    torch.testing.assert_close(out.anomaly_map, expected)
    # halving one scale doubles that part's contribution, and nothing else
    detector.set_map_scales(0.125, 0.5)
    with torch.no_grad():
        doubled = detector(x).anomaly_map
    torch.testing.assert_close(doubled - out.anomaly_map, smooth(0.5 * probability / 0.25, sigma=1.0))


def test_map_scales_belong_to_the_fused_map_and_are_positive():
    with pytest.raises(ValueError, match="fused"):
        head_detector().set_map_scales(1.0, 1.0)
    with pytest.raises(ValueError, match="> 0"):
        head_detector(anomaly_map=FUSED).set_map_scales(0.0, 1.0)


def test_checkpoint_round_trip_keeps_the_fused_map_scales(tmp_path):
    detector = head_detector(anomaly_map=FUSED)
    detector.set_map_scales(0.3, 0.2)
    calibration = Calibration(pixel_threshold=1.0, image_threshold=1.0, score_scale=0.1)
    loaded = load_checkpoint(
        save_checkpoint(tmp_path / "f.safetensors", detector, category="f", calibration=calibration)
    )
    assert loaded.detector.map_scales.tolist() == pytest.approx([0.3, 0.2])
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(detector(x).anomaly_map, loaded.detector(x).anomaly_map)


def test_with_anomaly_map_rescores_the_same_weights():
    detector = head_detector()
    x = torch.rand(2, 3, 24, 24)
    fused = with_anomaly_map(detector, FUSED)
    error_only = with_anomaly_map(detector, "ssim+gms")
    assert fused.config.scoring.anomaly_map == FUSED and fused.map_scales.tolist() == [1.0, 1.0]
    assert error_only.head is None and error_only.config.head is None  # the CAE alone
    with torch.no_grad():
        recon = detector.cae(x)
        torch.testing.assert_close(error_only.cae(x), recon)
        torch.testing.assert_close(fused.head(x, recon), detector.head(x, recon))
    with pytest.raises(ValueError, match="needs a discriminative head"):
        with_anomaly_map(error_only, "head")


def test_the_head_pads_as_configured_and_a_reflecting_head_needs_two_pixels_at_the_bottom():
    head = DiscriminativeHead(HeadConfig(widths=(4, 8, 8), padding="reflect"), image_channels=1)
    modes = {
        m.padding_mode for m in head.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    }
    assert modes == {"reflect"}
    assert head(torch.rand(1, 1, 5, 7), torch.rand(1, 1, 5, 7)).shape == (1, 5, 7)  # 5 → 3 → 2 rows
    with pytest.raises(ValueError, match=r"HeadConfig\.padding must be one of"):
        HeadConfig(padding="replicate")
    cae = CAEConfig(input_size=8, in_channels=1, widths=(4, 8), pools=(2,), bottleneck_channels=8)
    with pytest.raises(ValueError, match="leave 1×1 of a 8² input"):  # 8 → 4 → 2 → 1
        DetectorConfig(
            cae=cae,
            scoring=ScoringConfig(anomaly_map="head"),
            head=HeadConfig((4, 8, 8, 8), padding="reflect"),
        )
    DetectorConfig(
        cae=cae, scoring=ScoringConfig(anomaly_map="head"), head=HeadConfig((4, 8, 8), padding="reflect")
    )
