"""Tests for models/scoring.py: anomaly maps, smoothing, image scores, defect masks, the config."""

import pytest
import torch

from models.scoring import (
    ScoringConfig,
    anomaly_map,
    defect_mask,
    gaussian_blur,
    gms_map,
    image_score,
    l2_map,
    smooth,
    ssim_map,
)


def _edge_image(size: int = 32) -> torch.Tensor:
    """(1, 3, size, size): dark left half, bright right half."""
    x = torch.zeros(1, 3, size, size)
    x[..., size // 2 :] = 1.0
    return x


def test_l2_map_by_hand():
    image = torch.tensor([[[[0.0, 1.0]], [[0.5, 0.5]]]])  # (1, 2, 1, 2)
    recon = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.5]]]])
    # pixel 0: ((0-1)² + (0.5-0)²) / 2 = 0.625; pixel 1: (0 + 0) / 2 = 0
    assert l2_map(image, recon).tolist() == [[[0.625, 0.0]]]


def test_ssim_map_is_zero_for_identical_images_and_positive_for_different():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 24, 24)
    same = ssim_map(image, image.clone())
    assert same.shape == (2, 24, 24)
    assert same.abs().max() < 1e-5
    different = ssim_map(image, torch.rand(2, 3, 24, 24))
    assert (different > 0.1).float().mean() > 0.9
    assert different.max() <= 2.0


def test_gms_map_is_zero_for_identical_images_and_peaks_at_a_lost_edge():
    image = _edge_image()
    assert gms_map(image, image.clone()).abs().max() < 1e-6
    amap = gms_map(image, torch.full_like(image, 0.5))[0]  # the reconstruction lost the edge
    assert amap.shape == (32, 32)
    assert amap[:, 15:17].min() > 0.9  # at the edge
    assert amap[:, :3].max() < 0.01  # far from it
    assert amap.max() <= 1.0


def test_gaussian_blur_preserves_a_constant_and_the_sum():
    constant = torch.full((1, 2, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(constant, 2.0), constant, atol=1e-6)
    tiny = torch.full((1, 1, 3, 3), 0.7)  # smaller than the kernel radius: replicate padding
    assert torch.allclose(gaussian_blur(tiny, 2.0), tiny, atol=1e-6)

    impulse = torch.zeros(1, 1, 31, 31)
    impulse[0, 0, 15, 15] = 1.0
    blurred = gaussian_blur(impulse, 2.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert blurred[0, 0, 15, 15] == blurred.max() < 1.0
    assert torch.allclose(blurred[0, 0], blurred[0, 0].t(), atol=1e-7)  # isotropic
    assert gaussian_blur(impulse, 0.0) is impulse


def test_anomaly_map_kinds():
    torch.manual_seed(0)
    image, recon = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    l2 = anomaly_map(image, recon, ScoringConfig(anomaly_map="l2", smoothing_sigma=0))
    assert torch.equal(l2, l2_map(image, recon))
    both = anomaly_map(image, recon, ScoringConfig(anomaly_map="ssim+gms", smoothing_sigma=0))
    assert torch.allclose(both, 0.5 * (ssim_map(image, recon) + gms_map(image, recon)))
    smoothed = anomaly_map(image, recon, ScoringConfig(anomaly_map="l2", smoothing_sigma=1.5))
    assert torch.allclose(smoothed, smooth(l2, 1.5))
    with pytest.raises(ValueError, match="head"):
        anomaly_map(image, recon, ScoringConfig(anomaly_map="head"))


def test_image_score_max_and_topk_by_hand():
    amap = torch.arange(10, dtype=torch.float32).reshape(1, 2, 5)  # values 0..9
    amap = torch.cat([amap, -amap])  # second image: 0, -1, ..., -9
    assert image_score(amap, ScoringConfig(score_reduction="max")).tolist() == [9.0, 0.0]
    top3 = image_score(amap, ScoringConfig(score_reduction="topk", topk_fraction=0.3))
    assert top3.tolist() == pytest.approx([(9 + 8 + 7) / 3, (0 - 1 - 2) / 3])
    top1 = image_score(amap, ScoringConfig(score_reduction="topk", topk_fraction=0.01))  # k >= 1
    assert top1.tolist() == [9.0, 0.0]


def test_defect_mask_is_strictly_above_the_threshold():
    amap = torch.tensor([[0.1, 0.5, 0.9]])
    assert defect_mask(amap, 0.5).tolist() == [[False, False, True]]


def test_starting_scoring_is_raw_l2_and_max():
    config = ScoringConfig.starting()
    assert (config.anomaly_map, config.smoothing_sigma, config.score_reduction) == ("l2", 0.0, "max")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("anomaly_map", "l1"),
        ("score_reduction", "mean"),
        ("smoothing_sigma", -1.0),
        ("topk_fraction", 0.0),
        ("topk_fraction", 1.5),
        ("ssim_window", 10),
        ("ssim_window", 1),
        ("gms_scales", 0),
    ],
)
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"ScoringConfig.{field}"):
        ScoringConfig(**{field: value})
