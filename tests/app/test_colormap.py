"""The stored inferno table is matplotlib's."""

import numpy as np
import pytest

from app.colormap import INFERNO


def test_table_shape_and_ends():
    assert INFERNO.shape == (256, 3) and INFERNO.dtype == np.uint8
    assert INFERNO[0].tolist() == [0, 0, 4] and INFERNO[255].tolist() == [252, 255, 164]
    assert not INFERNO.flags.writeable


def test_table_equals_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    reference = np.round(matplotlib.colormaps["inferno"](np.arange(256))[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(INFERNO, reference)
