"""Tests for models/flips.py and the detector's test-time flip averaging."""

import pytest
import torch

from models.calibration import Calibration
from models.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from models.detector import with_test_time_flips
from models.flips import FLIPS, flip_views, merge_views
from models.scoring import ScoringConfig, image_score, smooth
from tests.models.test_head import FUSED, head_detector

ALL = ("h", "v", "hv")


def test_views_are_the_images_then_each_flip_in_order():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    views = flip_views(x, ALL)
    assert views.shape == (8, 1, 3, 4)
    torch.testing.assert_close(views[:2], x)
    torch.testing.assert_close(views[2:4], x.flip(-1))
    torch.testing.assert_close(views[4:6], x.flip(-2))
    torch.testing.assert_close(views[6:], x.flip(-2, -1))
    assert flip_views(x, ()) is x


@pytest.mark.parametrize("flips", [("h",), ("v", "hv"), ALL])
def test_views_of_a_map_merge_back_into_the_map(flips):
    maps = torch.rand(3, 5, 6)
    torch.testing.assert_close(merge_views(flip_views(maps[:, None], flips)[:, 0], flips), maps)


@pytest.mark.parametrize(("flip", "corner"), [("h", (0, -1)), ("v", (-1, 0)), ("hv", (-1, -1))])
def test_a_peak_seen_in_one_view_is_averaged_down_where_it_sits_in_the_image(flip, corner):
    views = torch.zeros(2, 5, 6)
    views[1, 0, 0] = 1.0  # top left in the flipped view
    expected = torch.zeros(1, 5, 6)
    expected[0, corner[0], corner[1]] = 0.5
    torch.testing.assert_close(merge_views(views, (flip,)), expected)


def test_the_detector_averages_the_unflipped_maps_of_its_views():
    plain = head_detector(anomaly_map=FUSED)
    plain.set_map_scales(0.25, 0.5)
    flipped = with_test_time_flips(plain, ALL)
    flipped.set_map_scales(0.25, 0.5)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        out = flipped(x)

        def map_of(view: torch.Tensor) -> torch.Tensor:
            return plain.segment(view, plain.cae(view))

        # each view's map, flipped back into the image's frame
        per_view = [map_of(x)] + [map_of(x.flip(FLIPS[name])).flip(FLIPS[name]) for name in ALL]
        reconstruction = plain.cae(x)
    expected = smooth(torch.stack(per_view).mean(dim=0), sigma=1.0)
    torch.testing.assert_close(out.anomaly_map, expected)
    torch.testing.assert_close(out.image_score, image_score(expected, flipped.config.scoring))
    torch.testing.assert_close(out.reconstruction, reconstruction)  # the image's own, not a view's
    with torch.no_grad():
        assert not torch.allclose(plain(x).anomaly_map, out.anomaly_map)


def test_the_flips_travel_in_the_checkpoint(tmp_path):
    detector = with_test_time_flips(head_detector(anomaly_map=FUSED), ("h", "hv"))
    calibration = Calibration(pixel_threshold=1.0, image_threshold=1.0, score_scale=0.1)
    path = save_checkpoint(tmp_path / "f.safetensors", detector, category="f", calibration=calibration)
    assert read_metadata(path)["model"]["scoring"]["test_time_flips"] == ["h", "hv"]
    loaded = load_checkpoint(path).detector
    assert loaded.config.scoring.test_time_flips == ("h", "hv")
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(detector(x).anomaly_map, loaded(x).anomaly_map)


def test_an_older_scoring_config_reads_as_no_flips():
    assert ScoringConfig(**{"anomaly_map": "ssim+gms"}).test_time_flips == ()


@pytest.mark.parametrize("flips", [("d",), ("h", "h"), "hv"], ids=["unknown", "twice", "a string, not names"])
def test_scoring_refuses_flips_it_does_not_know(flips):
    with pytest.raises(ValueError, match="test_time_flips"):
        ScoringConfig(test_time_flips=flips)
