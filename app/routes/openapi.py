"""OpenAPI documentation shared by the routes: summaries from docstrings, and the error answers.

Every error body is an ``ErrorDetail``; listing them per route, with an example, tells an
integrator what to handle. A handler's one-line docstring becomes its summary in /docs.
"""

from typing import Any

from fastapi.routing import APIRoute

from app.schemas import ErrorDetail


class DocumentedRoute(APIRoute):
    """An APIRoute whose OpenAPI summary is the first line of its handler's docstring."""

    def __init__(self, path: str, endpoint, **kwargs: Any) -> None:
        if kwargs.get("summary") is None and endpoint.__doc__:
            kwargs["summary"] = endpoint.__doc__.strip().splitlines()[0]
        super().__init__(path, endpoint, **kwargs)


ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    401: (
        "No API key, or one that is not accepted: send it in the X-API-Key header "
        "(the service sets INSPECT_API_KEYS; admin endpoints need INSPECT_ADMIN_API_KEYS).",
        {"detail": "missing API key: send a valid key in the X-API-Key header"},
    ),
    403: (
        "Not allowed: a client key on an admin endpoint, or reloading is disabled (no admin key set).",
        {"detail": "reload disabled: set INSPECT_ADMIN_API_KEYS"},
    ),
    404: (
        "Unknown category; `available` lists the categories that exist.",
        {"detail": "unknown category 'bottel'", "available": ["bottle", "screw"]},
    ),
    406: (
        "`Accept: image/png` asks for one overlay, but the request holds several images.",
        {"detail": "an image/png answer holds one image; this request has 3: accept application/json"},
    ),
    408: (
        "The request body did not arrive within INSPECT_UPLOAD_TIMEOUT_S; the connection is closed.",
        {"detail": "the upload did not finish within 30 s (12000 bytes received)"},
    ),
    409: (
        "Cannot run now: another reload is running, or the first load has not finished.",
        {"detail": "a reload is already running; retry when it has finished"},
    ),
    413: (
        "Too large: the body (INSPECT_MAX_UPLOAD_MB), an image's pixels (INSPECT_MAX_IMAGE_PIXELS), "
        "the number of images (INSPECT_MAX_IMAGES_PER_REQUEST) or all its images' pixels together "
        "(INSPECT_MAX_PIXELS_IN_FLIGHT).",
        {"detail": "image 0 has 20000×20000 = 400000000 pixels, more than the 40000000 allowed"},
    ),
    415: (
        "Unsupported Content-Type: send multipart/form-data or image/png, image/jpeg, image/bmp, image/tiff.",
        {
            "detail": "unsupported content type 'image/gif'; send multipart/form-data (parts named 'file'), ..."
        },
    ),
    422: (
        "Invalid input: no image, a corrupt, truncated or non-image file (named), or a bad parameter.",
        {"detail": "part 1 ('b.png') is corrupt or truncated (image file is truncated)", "filename": "b.png"},
    ),
    500: (
        "Unexpected error; quote `request_id` (also in the X-Request-ID header) to find it in the logs.",
        {"detail": "internal error", "request_id": "5f0c3e1d9a8b4c7e8f6a5b4c3d2e1f00"},
    ),
    503: (
        "Not available now: the category's model is loading (Retry-After) or failed to load, "
        "the service is at capacity (Retry-After: too many requests in progress, too many pixels "
        "or a full inference queue), or the service is shutting down.",
        {"detail": "the inference queue is full (256 of 256 images waiting); retry shortly"},
    ),
    504: (
        "An image waited longer than INSPECT_REQUEST_TIMEOUT_S for inference.",
        {"detail": "no result within the request timeout of 10 s"},
    ),
}

RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "seconds to wait before retrying (loading, queue full)",
        "schema": {"type": "integer"},
    }
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of a route for these error statuses."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, example = ERRORS[code]
        responses[code] = {
            "model": ErrorDetail,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
        if code == 503:
            responses[code]["headers"] = RETRY_AFTER_HEADER
    return responses
