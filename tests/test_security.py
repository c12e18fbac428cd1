"""Security properties of the whole project, checked from the outside.

- No unpickling anywhere on the load path: the source of ``models/`` and ``app/`` is scanned (ast)
  for pickle and the libraries built on it, and a checkpoint still loads, and serves, with every
  unpickler monkeypatched to raise; a pickle disguised as a checkpoint is refused unopened.
- Upload limits hold for chunked bodies on the wire: 413 once past the limit, and the server stops
  reading.
- The container runs as a non-root user.
- With API keys set, every operation the OpenAPI schema marks as secured refuses a request
  without a key (the keys' own tests are ``tests/app/test_auth.py`` and ``tests/app/test_keys.py``).
"""

import ast
import asyncio
import contextlib
import pathlib
import pickle
import re
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.registry import LoadState, ModelRegistry
from models.checkpoint import load_checkpoint
from tests.app.conftest import RGB_CATEGORY, make_settings, png_bytes, serve
from tests.app.hostile.conftest import start_live
from tests.conftest import write_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent
SCANNED = ("models", "app")
PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}
PICKLING_CALLS = {"torch.load", "torch.serialization.load", "pandas.read_pickle", "pd.read_pickle"}
NUMPY_LOADS = {"np.load", "numpy.load"}


def dotted(node: ast.AST) -> str:
    """``torch.serialization.load`` for the expression that names it, "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def pickle_uses(source: str, filename: str = "<source>") -> list[str]:
    """Every import of a pickling module and every call that unpickles, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [
                f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLING_MODULES
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in PICKLING_MODULES:
                found.append(f"{where}: from {module} import ...")
            if module in ("torch", "torch.serialization") and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from {module} import load")
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in PICKLING_CALLS:
                found.append(f"{where}: {name}(...)")
            if name in NUMPY_LOADS:
                allow = [k for k in node.keywords if k.arg == "allow_pickle"]
                if allow and not (isinstance(allow[0].value, ast.Constant) and allow[0].value.value is False):
                    found.append(f"{where}: {name}(..., allow_pickle=...)")
    return found


def test_the_scanner_finds_what_it_looks_for():
    source = """
import pickle, os
import dill as d
from joblib import load
from torch import load as tl
import torch, numpy as np
torch.load("x.pt")
np.load("x.npy", allow_pickle=True)
np.load("y.npy")                      # fine: no pickle by default
np.load("z.npy", allow_pickle=False)  # fine
"""
    uses = pickle_uses(source)
    assert len(uses) == 6, uses
    assert any("np.load(..., allow_pickle" in use for use in uses)


def test_no_pickle_on_the_load_path():
    uses = []
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            uses += pickle_uses(path.read_text(), str(path.relative_to(REPO)))
    assert not uses, "unpickling on the load path:\n" + "\n".join(uses)


def refuse(*_, **__):
    raise AssertionError("unpickling was attempted")


@pytest.fixture
def no_unpickling(monkeypatch):
    for module, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (torch, "load"),
        (torch.serialization, "load"),
        (np, "load"),
    ]:
        monkeypatch.setattr(module, name, refuse)


def test_a_checkpoint_loads_and_serves_without_any_unpickler(tmp_path, no_unpickling):
    path = write_tiny_checkpoint(tmp_path / f"{RGB_CATEGORY}.safetensors")
    checkpoint = load_checkpoint(path)
    assert checkpoint.category == RGB_CATEGORY
    registry = ModelRegistry(tmp_path)
    registry.load_all(torch.device("cpu"), lambda _: None)
    assert registry.get(RGB_CATEGORY).state == LoadState.READY


class Payload:
    """Unpickling this creates the marker file: the proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickle_disguised_as_a_checkpoint_is_refused_unopened(tmp_path):
    marker = tmp_path / "unpickled"
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save({"weights": torch.zeros(2), "payload": Payload(marker)}, weights / "evil.safetensors")
    (weights / "plain.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    write_tiny_checkpoint(weights / f"{RGB_CATEGORY}.safetensors")
    registry = ModelRegistry(weights)
    registry.load_all(torch.device("cpu"), lambda _: None)
    assert registry.get("evil").state == registry.get("plain").state == LoadState.FAILED
    assert "not a readable safetensors file" in (registry.get("evil").error or "")
    assert registry.get(RGB_CATEGORY).state == LoadState.READY
    assert not marker.exists()


# --- upload limits on the wire -----------------------------------------------------------------

LIMIT_BYTES = int(0.01 * 1024 * 1024)  # INSPECT_MAX_UPLOAD_MB=0.01
CHUNK = 1024


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")
    write_tiny_checkpoint(weights / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY)
    with start_live(weights, INSPECT_MAX_UPLOAD_MB="0.01") as server:
        yield server


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def chunked_upload(port: int, content_type: bytes, first: bytes, chunks: int) -> tuple[bytes, int, bool]:
    """Send a chunked body (no Content-Length) a chunk at a time until an answer arrives.

    Returns (the answer's head, bytes of body sent before it arrived, whether the server then
    closed the connection instead of reading on).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /inspect/" + RGB_CATEGORY.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: " + content_type + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(first)
        )
        sock.setblocking(False)
        sent, answer = 0, b""
        for _ in range(chunks):
            with contextlib.suppress(BlockingIOError):  # nothing yet
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk(b"\0" * CHUNK))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += CHUNK
            time.sleep(0.002)
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        closed = False
        try:
            for _ in range(200):  # the server must not go on reading a body it refused
                sock.sendall(chunk(b"\0" * CHUNK))
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        if not closed:
            try:
                closed = sock.recv(65536) == b""  # the answer was read: only the end can come
            except ConnectionResetError:
                closed = True
            except TimeoutError:
                closed = False
    return answer, sent, closed


MULTIPART_HEAD = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'


@pytest.mark.parametrize(
    ("content_type", "first"),
    [(b"image/png", b"\x89PNG"), (b"multipart/form-data; boundary=xyz", MULTIPART_HEAD)],
    ids=["raw", "multipart"],
)
def test_a_chunked_upload_is_cut_off_at_the_limit(limited_server, content_type, first):
    answer, sent, closed = chunked_upload(limited_server.port, content_type, first, chunks=2000)
    head = answer.split(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), answer[:300]
    assert "application/json" in head
    assert sent < LIMIT_BYTES + 64 * CHUNK, sent  # refused near the limit, not at the end of 2 MB
    assert closed
    good = httpx.post(
        f"{limited_server.url}/inspect/{RGB_CATEGORY}",
        content=png_bytes(20, 20),
        headers={"content-type": "image/png"},
    )
    assert good.status_code == 200


def test_a_chunked_upload_via_an_async_generator(limited_server):
    consumed = []

    async def body():
        for _ in range(2000):
            consumed.append(CHUNK)
            yield b"\0" * CHUNK

    async def post():
        async with httpx.AsyncClient(base_url=limited_server.url, timeout=10) as client:
            try:
                return await client.post(
                    f"/inspect/{RGB_CATEGORY}", content=body(), headers={"content-type": "image/png"}
                )
            except httpx.TransportError as err:  # the server closed the connection mid-body
                return err

    outcome = asyncio.run(post())
    if isinstance(outcome, httpx.Response):
        assert outcome.status_code == 413 and "exceeds the limit" in outcome.json()["detail"]
    assert sum(consumed) < 2000 * CHUNK  # the client stopped sending: nobody read the rest


# --- the container -----------------------------------------------------------------------------


def test_the_container_runs_as_a_non_root_user():
    dockerfile = REPO / "Dockerfile"
    if not dockerfile.is_file():
        pytest.skip("no Dockerfile yet")
    users = re.findall(r"^\s*USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE | re.IGNORECASE)
    assert users, "the Dockerfile never sets USER: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


# --- API keys ----------------------------------------------------------------------------------

OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}


def test_with_keys_every_secured_operation_refuses_a_request_without_one(tmp_path):
    write_tiny_checkpoint(tmp_path / f"{RGB_CATEGORY}.safetensors")
    settings = make_settings(tmp_path, api_keys="k-123456789")

    async def answers() -> tuple[dict, list]:
        async with serve(settings) as (app, client):
            schema = app.openapi()
            found = []
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    url = path.replace("{category}", RGB_CATEGORY)
                    answer = await client.request(
                        method.upper(), url, content=png_bytes(), headers={"content-type": "image/png"}
                    )
                    found.append((method.upper(), path, operation, answer))
            return schema, found

    schema, found = asyncio.run(answers())
    if "securitySchemes" not in schema.get("components", {}):
        pytest.skip("the service has no API keys")
    for method, path, operation, answer in found:
        assert "k-123456789" not in answer.text
        if path in OPEN_PATHS:
            assert answer.status_code != 401, (method, path)
            continue
        assert operation.get("security"), f"{method} {path} declares no security"
        assert answer.status_code in (401, 403), (method, path, answer.status_code)
