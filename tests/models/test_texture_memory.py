"""Tests for models/texture_memory.py and the fused detector that carries one."""

import pytest
import torch

from models.cae import CAEConfig
from models.calibration import Calibration
from models.checkpoint import load_checkpoint, save_checkpoint
from models.detector import AnomalyDetector, DetectorConfig, with_anomaly_map, with_texture
from models.head import HeadConfig
from models.scoring import ScoringConfig, image_score, smooth
from models.texture_memory import TextureConfig, TextureMemory, nearest_distance, texture_features

FUSED = "head+ssim+gms"
SMALL = TextureConfig(windows=(3, 7), grid=8, memory_size=4096)


def texture_detector(channels: int = 3, texture: TextureConfig | None = SMALL) -> AnomalyDetector:
    torch.manual_seed(0)
    config = DetectorConfig(
        cae=CAEConfig(input_size=24, in_channels=channels, widths=(4, 8), pools=(2,), bottleneck_channels=8),
        scoring=ScoringConfig(anomaly_map=FUSED, smoothing_sigma=1.0, score_reduction="topk"),
        head=HeadConfig(widths=(4, 8, 8)),
        texture=texture,
    )
    return AnomalyDetector(config).eval()


def grain(n: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) fine random grain around mid-grey: the 'normal' texture of these tests."""
    generator = torch.Generator().manual_seed(seed)
    return (0.5 + 0.05 * torch.randn(n, 1, size, size, generator=generator)).clamp(0, 1)


def test_features_of_a_flat_image_are_its_value_and_no_contrast_or_gradient():
    config = TextureConfig(windows=(3, 5), grid=4)
    images = torch.full((2, 3, 12, 12), 0.25)
    images[1] = 0.75
    features = texture_features(images, config)
    assert features.shape == (2, config.feature_dim(3), 4, 4) == (2, 12, 4, 4)
    per_window = features.view(2, 2, 6, 4, 4)  # (B, window, [R, G, B, contrast, |dx|, |dy|], g, g)
    torch.testing.assert_close(per_window[0, :, :3], torch.full((2, 3, 4, 4), 0.25))
    torch.testing.assert_close(per_window[1, :, :3], torch.full((2, 3, 4, 4), 0.75))
    assert per_window[:, :, 3:].abs().max() < 1e-6


def test_features_tell_vertical_stripes_from_horizontal_ones():
    config = TextureConfig(windows=(5,), grid=2)
    stripes = (torch.arange(16) % 2).float().expand(16, 16)  # columns alternate: vertical stripes
    features = texture_features(torch.stack([stripes, stripes.t()])[:, None], config)[:, :, 0, 0]
    mean, contrast, dx, dy = features.unbind(dim=1)
    torch.testing.assert_close(mean, torch.full((2,), 0.5), atol=0.05, rtol=0)
    assert (contrast > 0.4).all()  # a 0/1 pattern: standard deviation near 0.5
    assert dx[0] > 0.8 and dy[0] < 1e-6  # vertical stripes change along x only
    assert dy[1] > 0.8 and dx[1] < 1e-6


@pytest.mark.parametrize("chunk_elements", [7, 64, 2**24, None])
def test_nearest_distance_is_the_brute_force_minimum_in_any_chunking(chunk_elements):
    generator = torch.Generator().manual_seed(1)
    queries, memory = torch.randn(37, 5, generator=generator), torch.randn(11, 5, generator=generator)
    expected = torch.cdist(queries, memory).amin(dim=1)
    torch.testing.assert_close(nearest_distance(queries, memory, chunk_elements), expected, atol=1e-5, rtol=0)


def test_remembered_images_are_at_distance_zero_and_a_foreign_texture_is_far_where_it_is():
    normal = grain(4)
    memory = TextureMemory(SMALL, channels=1)
    memory.remember(normal)  # 4 · 8² patches < 4096 places: every patch is remembered
    assert bool(memory.filled)
    with torch.no_grad():
        assert memory(normal[:1]).max() < 0.01  # zero up to float32 rounding under the square root
        streaky = grain(1, seed=9)
        streaky[..., :8, :] = (torch.arange(24) % 2).float() * 0.3 + 0.35  # a streaky band on top
        distance = memory(streaky)[0]
    assert distance.shape == (24, 24)
    assert distance[:6].min() > 3 * distance[12:].max()  # far in the band, near below it


def test_a_memory_larger_than_the_patches_repeats_them_and_keeps_its_shape():
    config = TextureConfig(windows=(3,), grid=4, memory_size=100)
    memory = TextureMemory(config, channels=1)
    memory.remember(grain(1))
    assert memory.memory.shape == (100, config.feature_dim(1))
    patches = (memory._descriptors(grain(1)) - memory.center) / memory.spread  # (16, D)
    exact = torch.cdist(memory.memory, patches, compute_mode="donot_use_mm_for_euclid_dist")
    assert exact.amin(dim=1).max() < 1e-5  # every place holds a patch
    assert len(torch.unique(memory.memory, dim=0)) == 16  # ... and every patch is there


def test_the_sample_is_seeded():
    config = TextureConfig(windows=(3,), grid=8, memory_size=50)
    a, b, c = (TextureMemory(config, 1) for _ in range(3))
    a.remember(grain(4), seed=0)
    b.remember(grain(4), seed=0)
    c.remember(grain(4), seed=1)
    assert torch.equal(a.memory, b.memory)
    assert not torch.equal(a.memory, c.memory)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"windows": (4,)}, "odd"),
        ({"windows": ()}, "odd"),
        ({"grid": 0}, "grid"),
        ({"memory_size": 0}, "memory"),
    ],
)
def test_config_refuses_what_cannot_work(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        TextureConfig(**kwargs)


def test_texture_joins_the_pixel_map_and_not_the_image_score():
    detector = texture_detector()
    detector.texture.remember(torch.rand(3, 3, 24, 24))
    detector.set_map_scales(0.25, 0.5, 5.0)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        out = detector(x)
        detection = smooth(detector.segment(x, detector.cae(x)), sigma=1.0)
        texture = smooth(detector.texture(x) / 5.0, sigma=1.0)
    assert texture.max() > SMALL.fused_cap > texture.min()  # both sides of the cap
    torch.testing.assert_close(out.anomaly_map, (2 * detection + texture.clamp_max(SMALL.fused_cap)) / 3)
    torch.testing.assert_close(out.image_score, image_score(detection, detector.config.scoring))
    assert not torch.allclose(out.anomaly_map, detection)


def test_a_detector_with_texture_needs_three_scales_and_the_fused_map():
    with pytest.raises(ValueError, match="3 parts"):
        texture_detector().set_map_scales(1.0, 1.0)
    with pytest.raises(ValueError, match="fused map"):
        DetectorConfig(scoring=ScoringConfig(anomaly_map="ssim+gms"), texture=TextureConfig())


def test_checkpoint_round_trip_keeps_the_memory_and_the_scales(tmp_path):
    detector = texture_detector(channels=1)
    detector.texture.remember(grain(3))
    detector.set_map_scales(0.3, 0.2, 1.5)
    calibration = Calibration(pixel_threshold=1.0, image_threshold=1.0, score_scale=0.1)
    path = save_checkpoint(tmp_path / "t.safetensors", detector, category="t", calibration=calibration)
    loaded = load_checkpoint(path).detector
    assert loaded.config.texture == SMALL
    assert loaded.map_scales.tolist() == pytest.approx([0.3, 0.2, 1.5])
    assert torch.equal(loaded.texture.memory, detector.texture.memory) and bool(loaded.texture.filled)
    x = grain(2, seed=5)
    with torch.no_grad():
        a, b = detector(x), loaded(x)
    assert torch.equal(a.anomaly_map, b.anomaly_map)
    assert torch.equal(a.image_score, b.image_score)


def test_a_config_written_before_texture_existed_reads_as_none():
    data = texture_detector(texture=None).config.to_dict()
    del data["texture"]
    assert DetectorConfig.from_dict(data).texture is None


def test_other_maps_drop_the_memory_and_the_fused_map_keeps_it():
    detector = texture_detector()
    detector.texture.remember(torch.rand(2, 3, 24, 24))
    kept = with_anomaly_map(detector, FUSED)
    assert torch.equal(kept.texture.memory, detector.texture.memory)
    assert kept.map_scales.numel() == 3
    for kind in ("head", "ssim+gms"):
        assert with_anomaly_map(detector, kind).texture is None
    dropped = with_texture(detector, None)
    assert dropped.texture is None and dropped.map_scales.numel() == 2
    fresh = with_texture(dropped, SMALL)
    assert not bool(fresh.texture.filled)  # a new memory is empty until it remembers
    torch.testing.assert_close(fresh.head.out.weight, detector.head.out.weight)
