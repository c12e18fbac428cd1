"""What can go wrong with a request, as exception types that each carry their HTTP answer.

The service raises these where the problem is found (upload, decode, registry, batcher); the
handlers installed by ``install_error_handlers`` turn them, and FastAPI's own validation and HTTP
errors, into the one JSON shape ``{"detail": str, ...}`` (``app.schemas.ErrorDetail``). No answer
ever carries a stack trace: anything unexpected becomes ``500 {"detail": "internal error",
"request_id": ...}`` in ``app.middleware``, logged with the same request id.
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

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = {key: value for key, value in extra.items() if value is not None}


class UnknownCategory(InspectError):
    status_code = 404


class CategoryUnavailable(InspectError):
    """The category's checkpoint is still loading or failed to load."""

    status_code = 503


class UnsupportedMediaType(InspectError):
    status_code = 415


class InvalidInput(InspectError):
    """A missing, corrupt or undecodable image, or a bad parameter."""

    status_code = 422


class PayloadTooLarge(InspectError):
    """Too many bytes, too many pixels or too many images."""

    status_code = 413


class NotAcceptable(InspectError):
    status_code = 406


class QueueFull(InspectError):
    status_code = 503

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_S)}, **extra)


class ServiceStopping(InspectError):
    status_code = 503


class InferenceTimeout(InspectError):
    status_code = 504


class InferenceFailed(InspectError):
    status_code = 500


class ClientDisconnected(InspectError):
    """The client went away; the answer is never read (499 in logs, as nginx names it)."""

    status_code = 499


def error_response(status_code: int, detail: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code, headers=headers)


async def _inspect_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InspectError)
    if exc.status_code >= 500:
        logger.warning("%s %s → %d: %s", request.method, request.url.path, exc.status_code, exc.detail)
    return error_response(exc.status_code, exc.detail, exc.headers, **exc.extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in errors)
    return error_response(422, f"invalid request: {summary}", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every anticipated error as ``{"detail": ...}`` JSON."""
    app.add_exception_handler(InspectError, _inspect_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
