"""Admission control: when too many inspections are already being handled, the next one is refused
at the door, at once, with 503 and Retry-After.

The inference queue (``INSPECT_MAX_QUEUE``) sheds load only when inference is the bottleneck. On a
CPU host the bottleneck is often in front of it (reading bodies, decoding, rendering and encoding
answers): requests pile up in the event loop and the codec pool, and the queue refuses one only
after it was read and decoded. At 4× the sustainable rate on 2 cores that took 200 ms a refusal,
admitted requests waited up to 12 s, and arrivals backed up outside the service (RELIABILITY.md).
``Admission`` bounds the inspections in progress, from arrival to the end of the answer, at
``INSPECT_MAX_IN_FLIGHT``; an admitted request then waits about ``max_in_flight / throughput``.

A refusal must cost far less than an inspection, or at 4× overload the refusals alone saturate the
event loop and are answered late. ``AdmissionMiddleware`` is plain ASGI in front of the router: a
refused request skips routing, dependencies and its body, and gets its 503 in tens of
microseconds, with its request id and access-log line still (it sits inside those middlewares).
Probes, metrics and the categories are never refused. The idea of a server's connection limit
(nginx ``limit_conn``), counted in requests the service is working on.

Requests are not all alike: a PNG of a few kilobytes can hold 40 megapixels, which take about a
gigabyte on their way through decode, inference, maps and overlay (24 bytes a pixel, measured), and
a request may carry 16 of them. So the pixels are admitted too: once its body is read, a request
reserves the pixels its images' headers declare (``reserve_pixels``, before any decoding) against
``INSPECT_MAX_PIXELS_IN_FLIGHT``, and gives them back with its place when its answer has gone. More
than the whole budget in one request: 413; not enough left now: 503 with Retry-After. Memory then
stays bounded whatever the mix of requests, where the byte and per-image limits alone let a 2 MB
request take 15 GB.
"""

import threading
from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.decode import header_pixels
from app.errors import PayloadTooLarge, QueueFull, error_response
from app.uploads import Upload

INSPECT_PREFIX = "/inspect/"
RESERVED = "reserved_pixels"  # the request's reservation, in scope["state"]


class Admission:
    """The number of inspections in progress, and their limit.

    Args:
        capacity: most inspections in progress at once; the next one gets QueueFull (503).
        pixel_capacity: most decoded pixels held at once; None: no pixel budget.
    """

    def __init__(self, capacity: int, pixel_capacity: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 (INSPECT_MAX_IN_FLIGHT), got {capacity}")
        if pixel_capacity is not None and pixel_capacity < 1:
            raise ValueError(
                f"pixel_capacity must be >= 1 (INSPECT_MAX_PIXELS_IN_FLIGHT), got {pixel_capacity}"
            )
        self.capacity = capacity
        self.pixel_capacity = pixel_capacity
        self.in_flight = 0
        self.pixels = 0
        self.refused = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Take one place; QueueFull (503, Retry-After) when every place is taken."""
        with self._lock:
            if self.in_flight >= self.capacity:
                self.refused += 1
                raise QueueFull(
                    f"too many requests in progress ({self.in_flight} of {self.capacity}); retry shortly"
                )
            self.in_flight += 1

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def reserve(self, pixels: int) -> None:
        """Reserve ``pixels``; PayloadTooLarge (413) beyond the whole budget, QueueFull (503) beyond
        what is left of it now."""
        cap = self.pixel_capacity
        if cap is None or pixels <= 0:
            return
        if pixels > cap:
            raise PayloadTooLarge(
                f"the request's images hold {pixels} pixels together, more than the {cap} the service "
                "decodes at once (INSPECT_MAX_PIXELS_IN_FLIGHT): send fewer or smaller images per request"
            )
        with self._lock:
            if self.pixels + pixels > cap:
                self.refused += 1
                raise QueueFull(
                    f"too many pixels being processed ({self.pixels} of {cap}, this request "
                    f"{pixels}); retry shortly"
                )
            self.pixels += pixels

    def give_back(self, pixels: int) -> None:
        with self._lock:
            self.pixels -= pixels


def reserve_pixels(request: Request, admission: Admission, uploads: Sequence[Upload]) -> None:
    """Reserve the pixels the uploads' headers declare; ``AdmissionMiddleware`` gives them back when
    the request ends. A header that cannot be read counts 0: decoding will say what is wrong."""
    state = request.scope.get("state", {})
    if RESERVED not in state:  # not behind AdmissionMiddleware: nobody would give them back
        return
    pixels = sum(header_pixels(upload.data) for upload in uploads)
    admission.reserve(pixels)
    state[RESERVED] += pixels


class AdmissionMiddleware:
    """Holds a place in the running service's ``Admission`` for each ``POST /inspect/...``.

    Outside the lifespan (no services) requests pass through: the route answers 503 itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = getattr(scope["app"].state, "services", None) if scope["type"] == "http" else None
        if services is None or scope["method"] != "POST" or not scope["path"].startswith(INSPECT_PREFIX):
            await self.app(scope, receive, send)
            return
        admission: Admission = services.batcher.admission
        try:
            admission.acquire()
        except QueueFull as refusal:
            scope.setdefault("state", {})["rejection"] = refusal.reason  # for the access log and metrics
            await error_response(refusal.status_code, refusal.detail, refusal.headers)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[RESERVED] = 0
        try:
            await self.app(scope, receive, send)
        finally:
            admission.give_back(state[RESERVED])
            admission.release()
