"""Tests for app/schemas.py: the API's closed vocabularies are the models' own."""

from typing import get_args

from app.schemas import ColorMode, Precision, ResizeMode
from models.imageio import COLOR_MODES
from models.precision import PRECISIONS
from models.preprocess import RESIZE_MODES


def test_the_api_names_exactly_the_modes_the_models_know():
    assert get_args(ColorMode) == COLOR_MODES
    assert get_args(ResizeMode) == RESIZE_MODES
    assert get_args(Precision) == PRECISIONS
