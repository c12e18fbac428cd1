"""Reading request bodies: the byte limit holds while streaming, multipart parsed incrementally."""

import asyncio

import httpx
import pytest
from starlette.requests import Request

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType, UploadTimeout
from app.uploads import Upload, read_uploads

pytestmark = pytest.mark.anyio


def multipart(files, data=None) -> tuple[str, bytes]:
    """A real multipart body as httpx writes it: (content type, bytes)."""
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.headers["content-type"], request.read()


def make_request(
    content_type: str | None, chunks: list[bytes], content_length: int | None = None, pause_s: float = 0.0
):
    """A starlette Request whose body arrives in ``chunks``, ``pause_s`` apart; records how many were read."""
    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    pending = list(chunks)
    read = []

    async def receive():
        if read and pause_s:
            await asyncio.sleep(pause_s)
        chunk = pending.pop(0) if pending else b""
        read.append(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive), read


async def test_multipart_parts_named_file_in_order_even_one_byte_at_a_time():
    content_type, body = multipart(
        [("file", ("a.png", b"AAA", "image/png")), ("file", ("b.jpg", b"BB", "image/jpeg"))],
        data={"note": "ignored"},
    )
    request, _ = make_request(content_type, [body[i : i + 1] for i in range(len(body))])
    uploads = await read_uploads(request, max_bytes=10_000, max_images=4)
    assert uploads == [Upload(b"AAA", "a.png", 0), Upload(b"BB", "b.jpg", 1)]


async def test_raw_body_is_one_image_without_a_name():
    request, _ = make_request("image/png; charset=binary", [b"12", b"34"])
    assert await read_uploads(request, max_bytes=100, max_images=1) == [Upload(b"1234", None, 0)]


async def test_a_too_large_content_length_is_refused_before_reading():
    request, read = make_request("image/png", [b"x" * 100] * 10, content_length=1000)
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 500 bytes"):
        await read_uploads(request, max_bytes=500, max_images=1)
    assert read == []


async def test_a_chunked_body_is_cut_off_at_the_limit():
    request, read = make_request("image/png", [b"x" * 100] * 50)  # no Content-Length
    with pytest.raises(PayloadTooLarge):
        await read_uploads(request, max_bytes=500, max_images=1)
    assert len(read) == 6  # stopped on the chunk that crossed the limit


async def test_a_lying_content_length_does_not_lift_the_limit():
    content_type, body = multipart([("file", ("a.png", b"x" * 2000, "image/png"))])
    request, read = make_request(content_type, [body[i : i + 256] for i in range(0, len(body), 256)], 10)
    with pytest.raises(PayloadTooLarge):
        await read_uploads(request, max_bytes=1000, max_images=1)
    assert len(read) < len(body) // 256


async def test_too_many_images_fails_at_the_extra_part():
    content_type, body = multipart([("file", (f"{i}.png", b"x", "image/png")) for i in range(3)])
    request, _ = make_request(content_type, [body])
    with pytest.raises(PayloadTooLarge, match="at most 2 per request"):
        await read_uploads(request, max_bytes=10_000, max_images=2)


@pytest.mark.parametrize(
    ("content_type", "message"),
    [(None, "unsupported content type none"), ("text/plain", "'text/plain'"), ("image/gif", "'image/gif'")],
)
async def test_unsupported_content_types(content_type, message):
    request, read = make_request(content_type, [b"GIF89a"])
    with pytest.raises(UnsupportedMediaType, match=message):
        await read_uploads(request, max_bytes=100, max_images=1)
    assert read == []


async def test_a_gif_part_is_unsupported():
    content_type, body = multipart([("file", ("a.gif", b"GIF89a", "image/gif"))])
    request, _ = make_request(content_type, [body])
    with pytest.raises(UnsupportedMediaType, match=r"part 0 \('a.gif'\) is image/gif"):
        await read_uploads(request, max_bytes=10_000, max_images=1)


async def test_missing_images_and_malformed_bodies_are_invalid():
    content_type, body = multipart([("other", ("a.png", b"x", "image/png"))])
    cases = [
        ((content_type, [body]), "no part named 'file'|parts named 'file'"),
        ((content_type, [body[:-20]]), "ends before its closing boundary"),
        (("multipart/form-data", [body]), "no boundary"),
        (("image/png", [b""]), "the request body is empty"),
    ]
    for (kind, chunks), message in cases:
        request, _ = make_request(kind, chunks)
        with pytest.raises(InvalidInput, match=message):
            await read_uploads(request, max_bytes=10_000, max_images=1)


async def test_a_body_that_does_not_arrive_in_time_is_a_408_that_closes_the_connection():
    request, read = make_request("image/png", [b"12", b"34", b"56"], pause_s=0.2)
    with pytest.raises(UploadTimeout, match=r"did not finish within 0.3 s \(4 bytes received\)") as caught:
        await read_uploads(request, max_bytes=100, max_images=1, timeout_s=0.3)
    assert caught.value.status_code == 408 and caught.value.headers == {"Connection": "close"}
    assert len(read) == 2  # the third chunk was never waited for


async def test_a_slow_body_within_the_deadline_is_read_whole():
    content_type, body = multipart([("file", ("a.png", b"AAA", "image/png"))])
    request, _ = make_request(content_type, [body[:10], body[10:]], pause_s=0.05)
    uploads = await read_uploads(request, max_bytes=10_000, max_images=1, timeout_s=5.0)
    assert uploads == [Upload(b"AAA", "a.png", 0)]
