"""What can go wrong with a request, as exception types that each carry their HTTP answer.

The service raises these where the problem is found (upload, decode, registry, batcher); the
handlers installed by ``install_error_handlers`` turn them, and FastAPI's own validation and HTTP
errors, into the one JSON shape ``{"detail": str, ...}`` (``app.schemas.ErrorDetail``). No answer
ever carries a stack trace: anything unexpected becomes ``500 {"detail": "internal error",
"request_id": ...}`` in ``app.middleware``, logged with the same request id.

Each error type names its ``reason``, a short fixed word (``queue_full``, ``too_large``...): the
handlers note it on the request (``request.state.rejection``), where the access log and the
``inspect_rejections_total{reason}`` metric read it (``app.access``).
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1


class InspectError(Exception):
    """A request that cannot be answered, with its status, message and optional extra JSON fields."""

    status_code = 500
    reason = "error"  # the metric label and log field; a fixed word, never the message

    def __init__(
        self, detail: str, *, headers: dict[str, str] | None = None, reason: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        if reason is not None:
            self.reason = reason
        self.extra = {key: value for key, value in extra.items() if value is not None}


class UnknownCategory(InspectError):
    status_code = 404
    reason = "unknown_category"


class CategoryUnavailable(InspectError):
    """The category's checkpoint is still loading or failed to load."""

    status_code = 503
    reason = "category_unavailable"


class UnsupportedMediaType(InspectError):
    status_code = 415
    reason = "unsupported_media_type"


class InvalidInput(InspectError):
    """A missing, corrupt or undecodable image, or a bad parameter."""

    status_code = 422
    reason = "bad_image"


class UploadTimeout(InspectError):
    """The body did not arrive within INSPECT_UPLOAD_TIMEOUT_S: a stalled or trickling client must not
    hold its admission place (``app.admission``) for as long as it likes."""

    status_code = 408
    reason = "upload_timeout"


class PayloadTooLarge(InspectError):
    """Too many bytes, too many pixels or too many images."""

    status_code = 413
    reason = "too_large"


class NotAcceptable(InspectError):
    status_code = 406
    reason = "not_acceptable"


class QueueFull(InspectError):
    status_code = 503
    reason = "queue_full"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_S)}, **extra)


class ServiceStopping(InspectError):
    status_code = 503
    reason = "stopping"


class InferenceTimeout(InspectError):
    status_code = 504
    reason = "timeout"


class InferenceFailed(InspectError):
    status_code = 500
    reason = "inference_failed"


class ClientDisconnected(InspectError):
    """The client went away; the answer is never read (499 in logs, as nginx names it)."""

    status_code = 499
    reason = "client_disconnected"


class Unauthorized(InspectError):
    """No API key, or one that is not accepted; the answer says which header to send."""

    status_code = 401
    reason = "unauthorized"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'}, **extra)


class Forbidden(InspectError):
    """A valid key without the right to this action, or an action the settings disable."""

    status_code = 403
    reason = "forbidden"


class Conflict(InspectError):
    """The action cannot run now (a reload while another runs, or before the first load ends)."""

    status_code = 409
    reason = "conflict"


def error_response(status_code: int, detail: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code, headers=headers)


def note_rejection(request: Request, reason: str) -> None:
    """Tell the access log and the metrics why this request was refused."""
    request.state.rejection = reason


async def _inspect_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InspectError)
    note_rejection(request, exc.reason)
    extra = exc.extra
    # 503s (load shed, loading, stopping) are states, not faults: the access log counts them, and a
    # warning for each refusal would multiply the work of an overload.
    if exc.status_code >= 500 and exc.status_code != 503:
        request_id = request.scope.get("state", {}).get("request_id")  # set by app.middleware
        if exc.status_code == 500:  # the client quotes it to find the logged traceback
            extra = {**extra, "request_id": request_id}
        logger.warning(
            "%s %s → %d: %s (request_id=%s)",
            request.method,
            request.url.path,
            exc.status_code,
            exc.detail,
            request_id,
        )
    return error_response(exc.status_code, exc.detail, exc.headers, **extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in errors)
    note_rejection(request, "invalid_request")
    return error_response(422, f"invalid request: {summary}", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every anticipated error as ``{"detail": ...}`` JSON."""
    app.add_exception_handler(InspectError, _inspect_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
