"""Noticing that a client has gone while its request waits for inference.

ASGI servers do not cancel a handler when its client disconnects; they deliver an
``http.disconnect`` message on the request's receive channel. Once the body has been read, the
next message on that channel can only be that one, so waiting for it tells the handler to give up
and lets the batcher drop the request's images before they are computed.
"""

from starlette.requests import Request


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client disconnects; call only after the whole body has been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
