"""Building a result: the include list, and a result carrying exactly the PNGs asked for."""

import numpy as np
import pytest

from app.errors import InvalidInput
from app.inference import ImageInference
from app.results import build_result, parse_include
from app.uploads import Upload


def test_parse_include():
    assert parse_include("mask,overlay") == {"mask", "overlay"}
    assert parse_include(" Anomaly_Map , mask,") == {"anomaly_map", "mask"}
    assert parse_include("") == frozenset()
    with pytest.raises(
        InvalidInput, match="include: unknown 'heat', 'png'; choose among mask, overlay, anomaly_map"
    ):
        parse_include("mask,heat,png")


def test_build_result_fields_and_only_the_requested_pngs():
    mask = np.zeros((4, 6), dtype=bool)
    mask[1, 2] = True
    inference = ImageInference(
        score=0.3,
        normalized_score=0.9,
        is_anomalous=True,
        pixel_threshold=0.05,
        anomalous_area_fraction=1 / 24,
        mask=mask,
        anomaly_map=np.full((4, 6), 130, dtype=np.uint8),
    )
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    result = build_result(Upload(b"", "a.png", 0), image, inference, frozenset({"mask"}), image_threshold=0.2)
    assert (result.filename, result.width, result.height) == ("a.png", 6, 4)
    assert (result.score, result.threshold, result.is_anomalous) == (0.3, 0.2, True)
    assert result.mask_png.startswith("iVBORw0KGgo")  # base64 of the PNG signature
    dumped = result.model_dump(exclude_unset=True)
    assert "overlay_png" not in dumped and "anomaly_map_png" not in dumped
