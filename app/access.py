"""One log line and the request metrics per HTTP request, from where the request ends.

The outermost middleware: it times the request from its arrival to the end of the answer, reads
the status the answer carried, and reads what the inner layers noted on the request's state: the
request id (``app.middleware``), the rejection reason (``app.errors``) and, for an inspection, the
images and their scores (``note_inspection``, called by the route). Then it logs one line (fields:
request_id, method, path, status, latency_ms and, for an inspection, category, images, scores,
anomalous; rejection when refused) and moves the metrics of ``app.metrics``. Probes, metrics and
docs assets log at DEBUG, so a scraper every few seconds does not drown the requests that matter.
Plain ASGI, like ``app.middleware``, so bodies stream through untouched.
"""

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.inference import ImageInference
from app.metrics import ServiceMetrics

logger = logging.getLogger("app.access")

INSPECT_PATH = re.compile(r"/inspect/([^/]+)")
QUIET_PATHS = re.compile(r"/(healthz|readyz|metrics|favicon\.ico)|/docs/assets/.*")
MAX_LOGGED_CATEGORY = 64
SCORE_DIGITS = 5


def note_images(request: Request, count: int) -> None:
    """Note how many images the request carries (logged even when it fails later)."""
    request.state.inspection = {"images": count}


def note_inspection(request: Request, inferences: Sequence[ImageInference]) -> None:
    """Note the verdicts of an inspection, for its log line and the image metrics."""
    request.state.inspection = {
        "images": len(inferences),
        "scores": [round(inference.score, SCORE_DIGITS) for inference in inferences],
        "anomalous": [inference.is_anomalous for inference in inferences],
    }


def printable(text: str) -> str:
    """``text``, with control characters escaped: a URL cannot forge a second text log line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessMiddleware:
    """Log each HTTP request once and record its metrics.

    Args:
        app: the inner ASGI application.
        metrics: where request, image and rejection counts go.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # when no answer starts: the server answers 500 for an escaped error

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        except asyncio.CancelledError:
            status = 499  # the server gave up on the client
            raise
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, duration_s: float) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        method, path = scope["method"], scope["path"]
        fields: dict[str, Any] = {
            "event": "request",
            "request_id": state.get("request_id", ""),
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(duration_s * 1000, 3),
        }
        reason = state.get("rejection")
        if reason is not None:
            fields["rejection"] = reason
            self.metrics.observe_rejection(reason)
        match = INSPECT_PATH.fullmatch(path)
        if match is not None and method == "POST":
            requested = match.group(1)
            label = self.metrics.category_label(requested)
            self.metrics.observe_request(label, status, duration_s)
            inspection = state.get("inspection") or {}
            if "anomalous" in inspection:
                self.metrics.observe_images(label, inspection["anomalous"])
            fields["category"] = requested[:MAX_LOGGED_CATEGORY]
            fields.update(inspection)
        level = logging.DEBUG if QUIET_PATHS.fullmatch(path) else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(level, "%s", summary(fields), extra={"fields": fields})


def summary(fields: dict[str, Any]) -> str:
    """The text form of a request's line: ``POST /inspect/bottle → 200 in 12.3 ms, 2 images, ...``."""
    text = f"{fields['method']} {printable(fields['path'])} → {fields['status']} in {fields['latency_ms']:.1f} ms"
    if "images" in fields:
        text += f", {fields['images']} image{'s' if fields['images'] != 1 else ''}"
    if "scores" in fields:
        verdicts = ("anomalous" if a else "normal" for a in fields["anomalous"])
        text += ": " + ", ".join(f"{s:g} {v}" for s, v in zip(fields["scores"], verdicts, strict=True))
    if "rejection" in fields:
        text += f" ({fields['rejection']})"
    return text
