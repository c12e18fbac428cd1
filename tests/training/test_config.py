"""Tests for training/config.py: the presets as a user gets them."""

import pytest

from training.config import PRESETS, TRAINED_FLIPS, preset


@pytest.mark.parametrize("augment", sorted(TRAINED_FLIPS))
def test_a_preset_averages_only_over_flips_its_training_showed_the_model(augment):
    chosen = preset("default", channels=1, augment=augment)
    assert set(chosen.detector.scoring.test_time_flips) <= set(TRAINED_FLIPS[augment])
    assert chosen.train.augment == augment and chosen.detector.channels == 1


def test_the_default_preset_averages_over_every_flip_it_trains_with():
    default = preset("default", channels=3)
    assert default.train.augment == "flip"
    assert default.detector.scoring.test_time_flips == ("h", "v", "hv")
    assert preset("default", channels=3, augment="none").detector.scoring.test_time_flips == ()


def test_the_head_ablation_is_scored_over_the_same_flips_and_the_starting_configuration_over_none():
    assert preset("reconstruction", channels=3).detector.scoring.test_time_flips == ("h", "v", "hv")
    assert PRESETS["starting"].detector.scoring.test_time_flips == ()


def test_the_starting_preset_pins_its_stretch_and_the_others_choose_from_the_data():
    assert PRESETS["starting"].resize == "stretch"
    assert PRESETS["default"].resize == PRESETS["reconstruction"].resize == "auto"
    assert preset("default", channels=1, seed=3).resize == "auto"  # overrides keep the policy
