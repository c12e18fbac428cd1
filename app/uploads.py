"""The images of a request, read from its body under a byte limit that holds while the body streams.

Two input forms: ``multipart/form-data`` with one or more parts named ``file``, or a raw body whose
Content-Type is image/png, image/jpeg, image/bmp or image/tiff (one image). The body is read chunk
by chunk from ``request.stream()`` and the request fails with 413 as soon as it passes
``INSPECT_MAX_UPLOAD_MB``: a too-large Content-Length is refused before reading anything, and a
chunked upload, which declares no length, is cut off at the limit. Multipart bodies are parsed
incrementally with python-multipart over that same limited stream, and the part after the last
allowed image fails the request at once. The whole body must arrive within a deadline
(``INSPECT_UPLOAD_TIMEOUT_S``, 408 after it): uvicorn has no body-read timeout of its own, and a
request holds an admission place while it uploads.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.decode import MEDIA_TYPES
from app.errors import ClientDisconnected, InvalidInput, PayloadTooLarge, UnsupportedMediaType, UploadTimeout

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
ACCEPTED = "multipart/form-data (parts named 'file'), " + ", ".join(
    sorted(set(MEDIA_TYPES) - {"image/x-ms-bmp"})
)


@dataclass(frozen=True)
class Upload:
    """One uploaded image, still encoded.

    Args:
        data: the file's bytes.
        filename: as the client named it (multipart only).
        index: position among the request's images, from 0.
    """

    data: bytes
    filename: str | None
    index: int


def too_large(limit: int) -> PayloadTooLarge:
    """413 for a body over the limit; the connection closes after it, as RFC 9110 allows, or the
    server would go on receiving (and discarding) the rest of the body to keep the connection."""
    return PayloadTooLarge(
        f"the request body exceeds the limit of {limit} bytes ({limit / 2**20:g} MiB)",
        headers={"Connection": "close"},
    )


@dataclass
class _Progress:
    """Bytes received so far, for the error that ends the upload."""

    received: int = 0


async def limited_stream(request: Request, limit: int, progress: _Progress) -> AsyncIterator[bytes]:
    """The body's chunks, counted in ``progress``; PayloadTooLarge once more than ``limit`` bytes are
    declared or received, ClientDisconnected (499, not logged as an error) when the client leaves
    mid-upload."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    try:
        async for chunk in request.stream():
            progress.received += len(chunk)
            if progress.received > limit:
                raise too_large(limit)
            yield chunk
    except ClientDisconnect:
        raise ClientDisconnected(
            f"the client disconnected after {progress.received} bytes of the upload"
        ) from None


async def read_uploads(
    request: Request, max_bytes: int, max_images: int, timeout_s: float | None = None
) -> list[Upload]:
    """Every image in the request, in order, read within ``timeout_s`` (None: no deadline).

    Raises:
        UnsupportedMediaType: neither multipart nor an accepted image type (415).
        PayloadTooLarge: body over ``max_bytes`` or more than ``max_images`` images (413).
        InvalidInput: empty body, malformed multipart, or no part named ``file`` (422).
        UploadTimeout: the body was not all received within ``timeout_s`` (408; the connection
            closes, as after a 413).
    """
    progress = _Progress()
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(request, max_bytes, max_images, progress)
    except TimeoutError:
        raise UploadTimeout(
            f"the upload did not finish within {timeout_s:g} s ({progress.received} bytes received)",
            headers={"Connection": "close"},
        ) from None


async def _read(request: Request, max_bytes: int, max_images: int, progress: _Progress) -> list[Upload]:
    content_type = request.headers.get("content-type", "")
    raw_type, options = parse_options_header(content_type)
    media_type = raw_type.decode("latin-1").lower()
    if media_type == "multipart/form-data":
        chunks = limited_stream(request, max_bytes, progress)
        return await read_multipart(chunks, options.get(b"boundary"), max_images)
    if media_type in MEDIA_TYPES:
        data = b"".join([chunk async for chunk in limited_stream(request, max_bytes, progress)])
        if not data:
            raise InvalidInput(f"the request body is empty: send the image as {media_type}")
        return [Upload(data, None, 0)]
    shown = repr(content_type) if content_type else "none"
    raise UnsupportedMediaType(f"unsupported content type {shown}; send {ACCEPTED}")


async def read_multipart(
    chunks: AsyncIterator[bytes], boundary: bytes | None, max_images: int
) -> list[Upload]:
    """Parse a multipart body incrementally; parts not named ``file`` are skipped."""
    if not boundary:
        raise InvalidInput("the multipart Content-Type has no boundary")
    parts = _FileParts(max_images)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as err:
        hint = "; does the body use the boundary its Content-Type names?" if "boundary" in str(err) else ""
        raise InvalidInput(f"malformed multipart body ({err}){hint}") from None
    if not parts.complete:
        raise InvalidInput("the multipart body ends before its closing boundary")
    if not parts.uploads:
        raise InvalidInput(f"no image: send one or more multipart parts named '{FILE_FIELD}'")
    return parts.uploads


class _FileParts:
    """python-multipart callbacks that keep the parts named ``file``."""

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images
        self.uploads: list[Upload] = []
        self.complete = False
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._data: bytearray | None = None
        self._filename: str | None = None

    def callbacks(self) -> "MultipartCallbacks":
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._headers, self._data, self._filename = {}, None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition.get(b"name") != FILE_FIELD.encode():
            return  # another form field: its bytes count against the limit, nothing more
        index = len(self.uploads)
        if index >= self.max_images:
            raise PayloadTooLarge(f"too many images: at most {self.max_images} per request")
        filename = disposition.get(b"filename")
        self._filename = decode_text(filename) if filename is not None else None
        part_type = parse_options_header(self._headers.get(b"content-type", b""))[0].decode("latin-1").lower()
        if part_type.startswith("image/") and part_type not in MEDIA_TYPES:
            raise UnsupportedMediaType(
                f"part {index} ({self._filename!r}) is {part_type}; send PNG, JPEG, BMP or TIFF images",
                filename=self._filename,
            )
        self._data = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is not None:
            self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._data is not None:
            self.uploads.append(Upload(bytes(self._data), self._filename, len(self.uploads)))
            self._data = None

    def on_end(self) -> None:
        self.complete = True


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
