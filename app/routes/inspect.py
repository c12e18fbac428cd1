"""``POST /inspect/{category}``: images in, anomaly verdicts, masks and overlays out.

The handler never blocks the event loop: uploads are decoded and answers rendered and encoded in
the codec thread pool, in parallel across requests; inference happens on the batcher's worker
thread, where this request's images may share a forward pass with other requests' images. Every
image is decoded before any is queued, so a bad image fails only its own request.
"""

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated, Any, cast

import numpy as np
from fastapi import APIRouter, Path, Query, Request, Response

from app.access import note_images, note_inspection
from app.admission import reserve_pixels
from app.batcher import gather_results
from app.decode import decode_image
from app.disconnect import wait_for_disconnect
from app.errors import RETRY_AFTER_S, CategoryUnavailable, NotAcceptable, ServiceStopping
from app.registry import LoadState, ModelEntry
from app.results import DEFAULT_INCLUDE, INCLUDABLE, build_result, overlay_png, parse_include
from app.routes.openapi import DocumentedRoute, error_responses
from app.schemas import ColorMode, InspectionResponse, ModelInfo, Precision, ResizeMode
from app.services import ServicesDep
from app.uploads import Upload, read_uploads
from models.checkpoint import Checkpoint

router = APIRouter(tags=["inspection"], route_class=DocumentedRoute)

IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
REQUEST_BODY = {
    "required": True,
    "description": "Either a multipart form with one or more image parts named `file`, or one image as "
    "the raw body. PNG, JPEG, BMP or TIFF; any size within the limits; greyscale, RGB, RGBA, palette or "
    "16-bit; EXIF orientation is applied.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "one part per image, each named `file`",
                    }
                },
            },
            "encoding": {"file": {"contentType": "image/png, image/jpeg, image/bmp, image/tiff"}},
        },
        "image/png": IMAGE_BODY,
        "image/jpeg": IMAGE_BODY,
        "image/bmp": IMAGE_BODY,
        "image/tiff": IMAGE_BODY,
    },
}
PNG_ANSWER = {
    "description": "The verdicts as JSON (default); or, with `Accept: image/png` (preferred over "
    "application/json) and exactly one image, the overlay PNG itself with the verdict in headers.",
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    "headers": {
        "X-Anomaly-Score": {"description": "raw image score", "schema": {"type": "number"}},
        "X-Anomaly-Normalized-Score": {
            "description": "in [0, 1], 0.5 at the threshold",
            "schema": {"type": "number"},
        },
        "X-Anomalous": {
            "description": "true or false",
            "schema": {"type": "string", "enum": ["true", "false"]},
        },
        "X-Anomalous-Area-Fraction": {
            "description": "share of pixels in the mask",
            "schema": {"type": "number"},
        },
    },
}


def require_ready(entry: ModelEntry) -> Checkpoint:
    """The category's checkpoint; CategoryUnavailable (503) unless it serves."""
    if entry.state == LoadState.LOADING:
        raise CategoryUnavailable(
            f"category {entry.category!r} is still loading; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
            state=entry.state,
        )
    if entry.state == LoadState.FAILED or entry.checkpoint is None:
        raise CategoryUnavailable(
            f"category {entry.category!r} failed to load: {entry.error}", state=entry.state
        )
    return entry.checkpoint


def wants_png(accept: str | None) -> bool:
    """True when the client names image/png and does not prefer application/json at least as much."""
    weights = {}
    for media_range in (accept or "").split(","):
        media_type, *params = (piece.strip() for piece in media_range.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[media_type.lower()] = weight
    png, json = weights.get("image/png", 0.0), weights.get("application/json")
    return png > 0 and (json is None or png > json)


def model_info(entry: ModelEntry, checkpoint: Checkpoint, precision: str) -> ModelInfo:
    return ModelInfo(
        version=entry.version or "",
        created_at=checkpoint.metadata.get("created_at"),
        input_size=checkpoint.input_size,
        resize=cast(ResizeMode, checkpoint.resize),
        exposure_mean=checkpoint.exposure_mean,
        roi=list(checkpoint.roi) if checkpoint.roi else None,
        color_mode=cast(ColorMode, checkpoint.color_mode),
        anomaly_map=checkpoint.detector.config.scoring.anomaly_map,
        test_time_flips=list(checkpoint.detector.config.scoring.test_time_flips),
        pixel_threshold=checkpoint.calibration.pixel_threshold,
        image_threshold=checkpoint.calibration.image_threshold,
        precision=cast(Precision, precision),
    )


async def in_pool(pool, function: Callable, *args: Any) -> Any:
    """Run ``function`` in the codec pool; ServiceStopping (503) once the pool has shut down."""
    try:
        future = asyncio.get_running_loop().run_in_executor(pool, function, *args)
    except RuntimeError:  # "cannot schedule new futures after shutdown"
        raise ServiceStopping("the service is shutting down; retry on another instance") from None
    return await future


async def decode_all(uploads: Sequence[Upload], color_mode: str, max_pixels: int, pool) -> list[np.ndarray]:
    """Decode every upload in parallel; the first bad one fails the request (413 or 422, named)."""
    decoders = [
        partial(decode_image, u.data, color_mode, max_pixels, filename=u.filename, index=u.index)
        for u in uploads
    ]
    return await asyncio.gather(*(in_pool(pool, decoder) for decoder in decoders))


@router.post(
    "/inspect/{category}",
    response_model=InspectionResponse,
    responses={200: PNG_ANSWER, **error_responses(404, 406, 408, 413, 415, 422, 500, 503, 504)},
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def inspect_images(
    request: Request,
    services: ServicesDep,
    category: Annotated[str, Path(description="a category from GET /categories", examples=["bottle"])],
    include: Annotated[
        str,
        Query(
            description=f"comma-separated images to return per result, among {', '.join(INCLUDABLE)}; "
            "empty for scores only",
            examples=["mask,overlay", "mask,overlay,anomaly_map", ""],
        ),
    ] = DEFAULT_INCLUDE,
    threshold: Annotated[
        float | None,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="override of the calibrated pixel threshold, in anomaly-map units: changes the mask, "
            "the outline and anomalous_area_fraction only; the image verdict (is_anomalous, "
            "normalized_score) always uses the calibrated image threshold",
            examples=[0.4],
        ),
    ] = None,
) -> Response:
    """Inspect one or more images of a category for anomalies."""
    settings = services.settings
    entry = services.registry.lookup(category)
    checkpoint = require_ready(entry)
    outputs = parse_include(include)
    png_answer = wants_png(request.headers.get("accept"))  # OpenAPI: the 200 answer's image/png
    with services.batcher.incoming():  # a partial batch waits for these images, not for nothing
        uploads = await read_uploads(
            request, settings.max_upload_bytes, settings.max_images_per_request, settings.upload_timeout_s
        )
        note_images(request, len(uploads))
        reserve_pixels(request, services.batcher.admission, uploads)  # 413 or 503 before any decoding
        if png_answer and len(uploads) != 1:
            raise NotAcceptable(
                f"an image/png answer holds one image; this request has {len(uploads)}: accept application/json"
            )
        pool = services.codec_pool
        images = await decode_all(uploads, checkpoint.color_mode, settings.max_image_pixels, pool)
        futures = services.batcher.submit(category, images, threshold, checkpoint)
    inferences = await gather_results(futures, settings.request_timeout_s, wait_for_disconnect(request))
    note_inspection(request, inferences)
    if png_answer:
        inference = inferences[0]
        return Response(
            await in_pool(pool, overlay_png, images[0], inference),
            media_type="image/png",
            headers={
                "X-Anomaly-Score": repr(inference.score),
                "X-Anomaly-Normalized-Score": repr(inference.normalized_score),
                "X-Anomalous": "true" if inference.is_anomalous else "false",
                "X-Anomalous-Area-Fraction": repr(inference.anomalous_area_fraction),
            },
        )
    image_threshold = checkpoint.calibration.image_threshold
    results = await asyncio.gather(
        *(
            in_pool(pool, build_result, upload, image, inference, outputs, image_threshold)
            for upload, image, inference in zip(uploads, images, inferences, strict=True)
        )
    )
    answer = InspectionResponse(
        category=category, model=model_info(entry, checkpoint, services.batcher.precision), results=results
    )
    return Response(answer.model_dump_json(exclude_unset=True), media_type="application/json")
