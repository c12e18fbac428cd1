"""Tests for models/calibration.py: thresholds from normal scores and the logistic normalisation."""

import math

import pytest
import torch

from models.calibration import Calibration, from_normal_scores


def test_from_normal_scores_takes_quantiles_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    pixels = torch.arange(11, dtype=torch.float32).reshape(1, 11)  # 0..10
    cal = from_normal_scores(scores, pixels, image_quantile=0.5, pixel_quantile=0.9)
    assert cal.image_threshold == pytest.approx(3.0)  # median
    assert cal.pixel_threshold == pytest.approx(9.0)  # 0.9 · 10 with linear interpolation
    assert cal.score_scale == pytest.approx(math.sqrt(2.5))  # sample std of 1..5
    assert cal.method == "normal-quantile"
    assert cal.details["normal_images"] == 5
    assert cal.details["normal_score_mean"] == pytest.approx(3.0)
    high = from_normal_scores(scores, pixels, image_quantile=0.75, pixel_quantile=0.95)
    assert high.image_threshold == pytest.approx(4.0)
    assert high.pixel_threshold == pytest.approx(9.5)


def test_identical_scores_still_give_a_positive_scale():
    cal = from_normal_scores(torch.full((4,), 2.0), torch.zeros(4, 3, 3))
    assert cal.image_threshold == pytest.approx(2.0)
    assert cal.score_scale == pytest.approx(2e-3)


def test_normalize_puts_the_image_threshold_at_exactly_one_half():
    cal = Calibration(pixel_threshold=0.05, image_threshold=0.2, score_scale=0.03)
    assert cal.normalize(torch.tensor([0.2])).item() == 0.5
    scores = torch.linspace(-1.0, 2.0, 301)
    normalized = cal.normalize(scores)
    assert ((normalized >= 0) & (normalized <= 1)).all()
    assert (normalized.diff() >= 0).all()
    assert normalized[0] < 1e-6 and normalized[-1] > 1 - 1e-6
    assert cal.normalize(torch.tensor([0.23])).item() == pytest.approx(1 / (1 + math.exp(-1)))


def test_round_trips_through_a_dict():
    cal = from_normal_scores(torch.tensor([1.0, 2.0, 4.0]), torch.rand(3, 4, 4))
    assert Calibration.from_dict(cal.to_dict()) == cal


@pytest.mark.parametrize(
    ("field", "value"),
    [("pixel_threshold", math.nan), ("image_threshold", math.inf), ("score_scale", 0.0), ("score_scale", -1)],
)
def test_invalid_calibration_names_the_field(field, value):
    kwargs = {"pixel_threshold": 0.1, "image_threshold": 0.1, "score_scale": 0.1, field: value}
    with pytest.raises(ValueError, match=field):
        Calibration(**kwargs)


@pytest.mark.parametrize("name", ["image_quantile", "pixel_quantile"])
@pytest.mark.parametrize("q", [0.0, 1.0, 1.5])
def test_invalid_quantiles_raise(name, q):
    with pytest.raises(ValueError, match=name):
        from_normal_scores(torch.rand(4), torch.rand(4, 2, 2), **{name: q})


def test_one_image_is_not_enough():
    with pytest.raises(ValueError, match="at least 2"):
        from_normal_scores(torch.tensor([1.0]), torch.rand(1, 2, 2))
