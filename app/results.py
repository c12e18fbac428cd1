"""From the model's verdict on an image to the answer's ``InspectionResult``: render, encode, wrap.

Which images an answer carries is the request's ``include`` list (``mask``, ``overlay``,
``anomaly_map``; default ``mask,overlay``); each costs a render and a PNG encoding, so a client
that only needs the scores asks for ``include=`` (empty). Runs in the codec pool.
"""

import numpy as np

from app.encode import encode_png, to_base64
from app.errors import InvalidInput
from app.inference import ImageInference
from app.overlay import render_overlay
from app.schemas import InspectionResult
from app.uploads import Upload

INCLUDABLE = ("mask", "overlay", "anomaly_map")
DEFAULT_INCLUDE = "mask,overlay"


def parse_include(value: str) -> frozenset[str]:
    """A comma-separated list of INCLUDABLE names (any case, spaces allowed) → the set; 422 otherwise."""
    names = {name.strip().lower() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(INCLUDABLE))
    if unknown:
        raise InvalidInput(
            f"include: unknown {', '.join(repr(n) for n in unknown)}; choose among {', '.join(INCLUDABLE)}",
            reason="invalid_request",
        )
    return frozenset(names)


def overlay_png(image: np.ndarray, inference: ImageInference) -> bytes:
    return encode_png(render_overlay(image, inference.anomaly_map, inference.mask))


def build_result(
    upload: Upload,
    image: np.ndarray,
    inference: ImageInference,
    include: frozenset[str],
    image_threshold: float,
) -> InspectionResult:
    """One image's result, with the PNGs ``include`` asks for (the others are left unset)."""
    height, width = image.shape[:2]
    pngs = {}
    if "mask" in include:
        pngs["mask_png"] = to_base64(encode_png(inference.mask))
    if "overlay" in include:
        pngs["overlay_png"] = to_base64(overlay_png(image, inference))
    if "anomaly_map" in include:
        pngs["anomaly_map_png"] = to_base64(encode_png(inference.anomaly_map))
    return InspectionResult(
        filename=upload.filename,
        width=width,
        height=height,
        score=inference.score,
        normalized_score=inference.normalized_score,
        threshold=image_threshold,
        is_anomalous=inference.is_anomalous,
        pixel_threshold=inference.pixel_threshold,
        anomalous_area_fraction=inference.anomalous_area_fraction,
        **pngs,
    )
