"""Request ids, and the last line of defence against unexpected errors.

Every answer carries an ``X-Request-ID`` header: the client's own when it sent a sane one, else a
fresh one. An exception that no handler anticipated is logged with that id and its stack trace,
and the client gets ``500 {"detail": "internal error", "request_id": ...}`` and nothing more.
Written as plain ASGI, not ``BaseHTTPMiddleware``, so request bodies stream through untouched.
"""

import logging
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "")


class RequestContextMiddleware:
    """Tag each HTTP request with a request id and turn unexpected exceptions into a bare 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = client_id if CLIENT_ID_PATTERN.fullmatch(client_id) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "request %s %s failed (request_id=%s)", scope["method"], scope["path"], request_id
            )
            if started:
                raise  # half an answer is out; only the server can close the connection now
            response = error_response(500, "internal error", request_id=request_id)
            await response(scope, receive, send_with_id)
