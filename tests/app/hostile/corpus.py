"""The hostile-input corpus: requests a camera, a proxy or an attacker could send, built in memory.

Nothing binary is committed: every body is generated here, from Pillow or by hand (PNG chunks with
their CRCs, so a header can claim what its pixels do not hold). Each ``Hostile`` case is one request
and the status the service must answer with; ``RELIABILITY.md`` tabulates them.

Decisions the corpus pins down:
- a multi-page TIFF and an animated PNG are inspected on their first page / frame (what Pillow
  opens, and what a viewer shows); the answer's width and height are the first page's;
- GIF, WebP and SVG are refused: 415 when declared as such, 422 when disguised as an accepted type;
- a part header line (a file name, mostly) longer than python-multipart's limit
  (``DEFAULT_MAX_HEADER_SIZE``, 4224 bytes) is malformed multipart: 422.
"""

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from python_multipart.multipart import DEFAULT_MAX_HEADER_SIZE

CATEGORY = "widget"  # the RGB category of tests.app.conftest's weights folder
URL = f"/inspect/{CATEGORY}"
BOUNDARY = "hostile-7f3a9c"


@dataclass(frozen=True)
class Hostile:
    """One request and its expected answer.

    Args:
        name: short id (pytest id and table row).
        sent: what is sent, for the table.
        status: the status the service must answer.
        body: the request body (bytes), or a zero-argument callable that builds it (large bodies).
        headers: request headers.
        path: the raw request path, percent-encoded as sent on the wire.
        query: the raw query string.
        check: optional test of the JSON answer, beyond the status and ``detail``.
    """

    name: str
    sent: str
    status: int
    body: bytes | Callable[[], bytes] = b""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "image/png"})
    path: str = URL
    query: str = ""
    check: Callable[[dict], bool] | None = None

    def content(self) -> bytes:
        return self.body() if callable(self.body) else self.body


# --- image builders ----------------------------------------------------------------------------


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def of_mode(mode: str, height: int = 16, width: int = 16) -> Image.Image:
    """Noise in any raw mode of Pillow's (CMYK, LA, LAB, ...)."""
    return Image.frombytes(mode, (width, height), noise(height, width, Image.getmodebands(mode)).tobytes())


def png(height: int = 20, width: int = 20, seed: int = 0) -> bytes:
    return save(Image.fromarray(noise(height, width, seed=seed)))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: any IHDR, one IDAT of ``rows`` (filter bytes included)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 30_000) -> bytes:
    """A 70-byte PNG whose header claims side × side RGB pixels; its data holds one row."""
    return raw_png(side, side, 8, 2, b"\0" * (1 + 3 * 16))


def rgb48_png(height: int = 12, width: int = 10) -> bytes:
    """16 bits per channel RGB, which Pillow reads but cannot write."""
    values = noise(height, width * 6, channels=1, seed=3)
    return raw_png(width, height, 16, 2, b"".join(b"\0" + row.tobytes() for row in values))


def grey16_png() -> bytes:
    return save(Image.fromarray(noise(16, 12, channels=1).astype(np.uint16) * 257))


def animated_gif() -> bytes:
    frames = [Image.fromarray(noise(16, 16, seed=s)).convert("P") for s in range(3)]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def animated_png() -> bytes:
    frames = [Image.fromarray(noise(16, 24, seed=s)) for s in range(3)]
    return save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50)


def multipage_tiff() -> bytes:
    """Three pages of different sizes: 20×30 first, then 50×40 and 8×8."""
    pages = [Image.fromarray(noise(h, w, seed=s)) for s, (h, w) in enumerate([(30, 20), (40, 50), (8, 8)])]
    return save(pages[0], "TIFF", save_all=True, append_images=pages[1:])


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
NOT_IMAGES = {
    "text": b"hello, this is not an image\n",
    "html": b"<!doctype html><html><body>hi</body></html>",
    "pdf": b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n",
    "zip": b"PK\x03\x04" + b"\0" * 60,
    "elf": b"\x7fELF\x02\x01\x01" + b"\0" * 57,
    "png-magic-only": b"\x89PNG\r\n\x1a\n",
    "jpeg-magic-only": b"\xff\xd8\xff\xe0",
}


# --- multipart builders ------------------------------------------------------------------------


def part(
    data: bytes, name: str = "file", filename: bytes | str | None = "a.png", kind: str = "image/png"
) -> bytes:
    disposition = f'form-data; name="{name}"'.encode()
    if filename is not None:
        raw = filename.encode() if isinstance(filename, str) else filename
        disposition += b'; filename="' + raw + b'"'
    head = b"Content-Disposition: " + disposition + f"\r\nContent-Type: {kind}\r\n\r\n".encode()
    return f"--{BOUNDARY}\r\n".encode() + head + data + b"\r\n"


def multipart(*parts: bytes, boundary: str = BOUNDARY) -> bytes:
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def tiny_parts(count: int, name: str) -> bytes:
    return multipart(
        *(part(b"x", name=name, filename=None, kind="text/plain") for _ in range(count)), part(png())
    )


# --- the corpus --------------------------------------------------------------------------------


def image_case(name: str, sent: str, data: bytes, status: int = 200, kind: str = "image/png", **extra):
    return Hostile(name, sent, status, data, {"content-type": kind}, **extra)


def size_is(width: int, height: int) -> Callable[[dict], bool]:
    return lambda body: (body["results"][0]["width"], body["results"][0]["height"]) == (width, height)


def corpus() -> list[Hostile]:
    """Every hostile case; bodies over a few KiB are built lazily."""
    jpeg = save(Image.fromarray(noise(32, 32)), "JPEG")
    whole = png(32, 32)
    cases = [
        # bytes that are not (whole) images
        image_case("zero-bytes", "empty body, Content-Type image/png", b"", 422),
        image_case("truncated-png-header", "first 30 bytes of a PNG", whole[:30], 422),
        image_case("truncated-png-data", "PNG cut in its IDAT", whole[: len(whole) // 2], 422),
        image_case("png-without-iend", "PNG missing its last 12 bytes (IEND)", whole[:-12], 200),
        image_case("truncated-jpeg", "JPEG cut in half", jpeg[: len(jpeg) // 2], 422, "image/jpeg"),
        image_case("jpeg-magic-only", "4 bytes of JPEG signature", NOT_IMAGES["jpeg-magic-only"], 422),
        *(
            image_case(f"not-image-{kind}", f"{kind} bytes as image/jpeg", data, 422, "image/jpeg")
            for kind, data in NOT_IMAGES.items()
            if kind != "jpeg-magic-only"
        ),
        image_case("svg-as-png", "SVG document as image/png", SVG, 422),
        image_case("svg", "SVG document as image/svg+xml", SVG, 415, "image/svg+xml"),
        image_case("gif-as-png", "animated GIF as image/png", animated_gif(), 422),
        image_case("gif", "animated GIF as image/gif", animated_gif(), 415, "image/gif"),
        image_case("zero-width-png", "PNG whose IHDR says 0×10", raw_png(0, 10, 8, 0, b""), 422),
        image_case("bad-crc-png", "PNG with a wrong IHDR CRC", whole[:29] + b"\0\0\0\0" + whole[33:], 422),
        # sizes
        image_case("png-bomb", "70-byte PNG claiming 30000×30000 RGB", png_bomb(), 413),
        image_case(
            "png-bomb-1x",
            "PNG claiming 1000×41000 (just over the pixel limit)",
            raw_png(1000, 41_000, 8, 0, b"\0\0"),
            413,
        ),
        Hostile(
            "many-large-images",
            "16 parts of 70 bytes, each header claiming 6000×6000 (576 MP together)",
            413,
            multipart(*(part(png_bomb(6000), filename=f"{i}.png") for i in range(16))),
            MULTIPART,
        ),
        image_case("1x1", "1×1 PNG", png(1, 1), 200, check=size_is(1, 1)),
        image_case("1x10000", "1 pixel tall, 10000 wide", png(1, 10_000), 200, check=size_is(10_000, 1)),
        image_case("10000x1", "10000 pixels tall, 1 wide", png(10_000, 1), 200, check=size_is(1, 10_000)),
        # modes
        image_case("cmyk-jpeg", "CMYK JPEG", save(of_mode("CMYK"), "JPEG"), 200, "image/jpeg"),
        image_case("palette", "palette PNG", save(Image.fromarray(noise(16, 16)).convert("P")), 200),
        image_case(
            "palette-transparent",
            "palette PNG with a transparent index",
            save(Image.fromarray(noise(16, 16)).convert("P"), transparency=0),
            200,
        ),
        image_case("grey16", "16-bit greyscale PNG", grey16_png(), 200),
        image_case("rgb48", "16-bit-per-channel RGB PNG", rgb48_png(), 200, check=size_is(10, 12)),
        image_case("la", "greyscale + alpha PNG", save(of_mode("LA")), 200),
        image_case("rgba", "RGBA PNG", save(of_mode("RGBA")), 200),
        image_case("bilevel", "1-bit PNG", save(Image.fromarray(noise(16, 16, 1)).convert("1")), 200),
        image_case(
            "int32-tiff",
            "32-bit integer TIFF",
            save(Image.fromarray(noise(8, 8, 1).astype(np.int32)), "TIFF"),
            200,
            "image/tiff",
        ),
        image_case(
            "float-tiff",
            "32-bit float TIFF",
            save(Image.fromarray(noise(8, 8, 1).astype(np.float32)), "TIFF"),
            200,
            "image/tiff",
        ),
        image_case("lab-tiff", "CIELAB TIFF", save(of_mode("LAB", 8, 8), "TIFF"), 200, "image/tiff"),
        image_case(
            "multipage-tiff",
            "3-page TIFF (20×30, 50×40, 8×8)",
            multipage_tiff(),
            200,
            "image/tiff",
            check=size_is(20, 30),
        ),
        image_case("apng", "animated PNG, 3 frames", animated_png(), 200, check=size_is(24, 16)),
        # multipart
        Hostile(
            "multipart-no-boundary",
            "multipart Content-Type without boundary",
            422,
            multipart(part(png())),
            {"content-type": "multipart/form-data"},
        ),
        Hostile(
            "multipart-wrong-boundary",
            "body built with another boundary",
            422,
            multipart(part(png())).replace(BOUNDARY.encode(), b"other-boundary"),
            MULTIPART,
        ),
        Hostile(
            "multipart-unclosed", "multipart body without its closing boundary", 422, part(png()), MULTIPART
        ),
        Hostile("multipart-garbage", "random bytes as multipart", 422, bytes(range(256)) * 8, MULTIPART),
        Hostile(
            "multipart-no-file-part",
            "one part named 'image'",
            422,
            multipart(part(png(), name="image")),
            MULTIPART,
        ),
        Hostile("multipart-empty-part", "one empty part named 'file'", 422, multipart(part(b"")), MULTIPART),
        Hostile(
            "multipart-gif-part",
            "a part declared image/gif",
            415,
            multipart(part(animated_gif(), kind="image/gif")),
            MULTIPART,
        ),
        Hostile(
            "thousands-of-other-parts",
            "5000 one-byte text parts, then one image",
            200,
            lambda: tiny_parts(5000, "other"),
            MULTIPART,
        ),
        Hostile(
            "thousands-of-file-parts",
            "5000 one-byte parts named 'file'",
            413,
            lambda: tiny_parts(5000, "file"),
            MULTIPART,
        ),
        Hostile(
            "huge-filename",
            f"a {4 * DEFAULT_MAX_HEADER_SIZE}-character file name",
            422,
            lambda: multipart(part(png(), filename="a" * 4 * DEFAULT_MAX_HEADER_SIZE)),
            MULTIPART,
        ),
        Hostile(
            "long-filename",
            "a 4000-character file name (under the header limit)",
            200,
            multipart(part(png(), filename="é" * 2000)),
            MULTIPART,
            check=lambda body: body["results"][0]["filename"] == "é" * 2000,
        ),
        Hostile(
            "unicode-filename",
            "RTL override, zero-width joiner, emoji, combining marks",
            200,
            multipart(part(png(), filename="\u202egnp.exe\u200d🦀e\u0301\u0000.png")),
            MULTIPART,
        ),
        Hostile(
            "latin1-filename",
            "file name bytes that are not UTF-8",
            200,
            multipart(part(png(), filename=b"caf\xe9\xff.png")),
            MULTIPART,
            check=lambda body: body["results"][0]["filename"] == "café\xff.png",
        ),
        Hostile(
            "traversal-filename",
            "file name ../../etc/passwd",
            200,
            multipart(part(png(), filename="../../etc/passwd")),
            MULTIPART,
        ),
        # content types
        image_case(
            "octet-stream", "a PNG as application/octet-stream", whole, 415, "application/octet-stream"
        ),
        image_case("no-content-type", "a PNG without Content-Type", whole, 415, ""),
        image_case("content-type-garbage", "Content-Type: ;;;===", whole, 415, ";;;==="),
        image_case("png-as-jpeg", "a PNG declared image/jpeg (content wins)", whole, 200, "image/jpeg"),
    ]
    cases += path_cases() + query_cases()
    return cases


PATHS = {
    "dotdot": "/inspect/../weights/widget",
    "dotdot-encoded": "/inspect/%2e%2e",
    "dotdot-slash-encoded": "/inspect/..%2Fweights%2Fwidget",
    "dotdot-all-encoded": "/inspect/%2e%2e%2f%2e%2e%2fwidget",
    "double-encoded": "/inspect/%252e%252e%252fwidget",
    "overlong-utf8": "/inspect/%c0%ae%c0%ae%c0%afwidget",
    "backslash": "/inspect/..%5c..%5cwidget",
    "absolute": "/inspect/%2fetc%2fpasswd",
    "nul": "/inspect/widget%00",
    "newline": "/inspect/widget%0d%0aX-Injected:%201",
    "escape-sequence": "/inspect/%1b%5b31mred",
    "del": "/inspect/%7f",
    "stem-with-suffix": "/inspect/widget.safetensors",
    "long-category": "/inspect/" + "w" * 4000,
    "unicode-category": "/inspect/%e2%80%aewidget",
    "trailing-slash": "/inspect/widget/",
}


def path_cases() -> list[Hostile]:
    return [
        Hostile(f"path-{name}", f"POST {path if len(path) < 60 else path[:40] + '…'}", 404, png(), path=path)
        for name, path in PATHS.items()
    ]


QUERIES = {
    "threshold=nan": 422,
    "threshold=NaN": 422,
    "threshold=inf": 422,
    "threshold=-inf": 422,
    "threshold=-1": 422,
    "threshold=1e309": 422,
    "threshold=-1e-309": 422,
    "threshold=0x10": 422,
    "threshold=": 422,
    "threshold=%00": 422,
    "threshold=1%2C2": 422,
    "threshold=1e308": 200,
    "threshold=0": 200,
    "threshold=-0": 200,
    "threshold=1e-320": 200,
    "threshold=0.5&threshold=nan": 422,
    "include=garbage": 422,
    "include=mask%00": 422,
    "include=,,,,": 200,
    "include=MASK,%20overlay%20": 200,
    "include=" + "x" * 10_000: 422,
    "include=" + "mask," * 2000: 200,
    "unknown=1": 200,
    "threshold=0.1&" + "&".join(f"p{i}=1" for i in range(1000)): 200,
    "%zz=%zz": 200,
}


def query_cases() -> list[Hostile]:
    def short(query: str) -> str:
        return query if len(query) < 50 else f"{query[:30]}… ({len(query)} chars)"

    return [
        Hostile(f"query-{i}", f"?{short(q)}", status, png(), query=q)
        for i, (q, status) in enumerate(QUERIES.items())
    ]
