"""Tests for models/detector.py's configuration: the image size a detector scores at, its exposure,
its region of interest."""

from dataclasses import replace

import pytest
import torch

from models.detector import AnomalyDetector, DetectorConfig
from tests.conftest import tiny_config


def test_without_an_image_size_images_are_resized_to_the_cae_input():
    assert tiny_config().input_size == 24


def test_a_larger_image_size_is_what_images_are_resized_to_and_the_map_keeps_it():
    config = replace(tiny_config(), image_size=36)
    assert config.input_size == 36 and config.cae.input_size == 24
    assert DetectorConfig.from_dict(config.to_dict()) == config
    out = AnomalyDetector(config).eval()(torch.rand(2, 3, 36, 36))
    assert out.anomaly_map.shape == (2, 36, 36) and out.reconstruction.shape == (2, 3, 36, 36)


@pytest.mark.parametrize(
    ("size", "fragment"), [(12, "at least the CAE's input size (24)"), (25, "multiple of 2")]
)
def test_an_image_size_below_the_cae_input_or_off_its_pooling_grid_is_refused(size, fragment):
    with pytest.raises(ValueError, match="image_size") as err:
        replace(tiny_config(), image_size=size)
    assert fragment in str(err.value)


def test_the_exposure_level_round_trips_and_older_configs_take_images_as_they_are():
    assert tiny_config().exposure_mean is None
    config = replace(tiny_config(), exposure_mean=0.43)
    assert DetectorConfig.from_dict(config.to_dict()) == config
    older = tiny_config().to_dict()
    del older["exposure_mean"]
    assert DetectorConfig.from_dict(older).exposure_mean is None


@pytest.mark.parametrize("level", [0.0, 1.0, -0.2, 3.0])
def test_an_exposure_level_outside_the_unit_interval_is_refused(level):
    with pytest.raises(ValueError, match=r"exposure_mean must be in \(0, 1\)"):
        replace(tiny_config(), exposure_mean=level)


def test_the_region_of_interest_round_trips_from_json_and_older_configs_inspect_the_whole_image():
    assert tiny_config().roi is None
    config = replace(tiny_config(), roi=[0.1, 0.2, 0.9, 1])  # as JSON gives it
    assert config.roi == (0.1, 0.2, 0.9, 1.0)
    assert DetectorConfig.from_dict(config.to_dict()) == config
    older = tiny_config().to_dict()
    del older["roi"]
    assert DetectorConfig.from_dict(older).roi is None


def test_an_empty_region_of_interest_is_refused():
    with pytest.raises(ValueError, match=r"DetectorConfig.roi: .*0 <= left < right <= 1"):
        replace(tiny_config(), roi=(0.6, 0.0, 0.4, 1.0))
