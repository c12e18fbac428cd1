"""Fixtures of the hostile-input, fault and load tests.

- ``hostile_app``: one in-process app with its lifespan for a whole module (hundreds of requests,
  one start);
- ``live``: the real thing, ``uvicorn app.main:app`` in a child process on a free loopback port, for
  this package (HTTP parsing, signals, process memory);
- ``send_raw``: a request straight into the ASGI app with the path and query exactly as written
  (httpx would normalise ``..`` away), and ``assert_serves``: a good request answers correctly.
"""

import asyncio
import http.client
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fastapi import FastAPI

from benchmarks.servers import RunningServer, make_target
from tests.app.conftest import GREY_CATEGORY, RGB_CATEGORY, make_settings, serve
from tests.app.hostile.corpus import png
from tests.conftest import write_tiny_checkpoint

GOOD_SIZE = (20, 14)  # (width, height) of the good request's image


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def module_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    write_tiny_checkpoint(folder / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, channels=3, seed=0)
    write_tiny_checkpoint(folder / f"{GREY_CATEGORY}.safetensors", GREY_CATEGORY, channels=1, seed=1)
    return folder


@pytest.fixture(scope="module")
async def hostile_app(module_weights: Path) -> AsyncIterator[FastAPI]:
    async with serve(make_settings(module_weights)) as (app, _):
        yield app


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


async def send_raw(
    app: FastAPI,
    method: str,
    raw_path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Answer:
    """One request into the ASGI app, its path decoded as uvicorn decodes it and never normalised."""
    header_list = [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items() if v]
    header_list.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": urllib.parse.unquote(raw_path),
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": header_list,
        "client": ("127.0.0.1", 5000),
        "server": ("inspect.test", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays: nothing more until the app answers
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer_headers = {k.decode().lower(): v.decode("latin-1") for k, v in start["headers"]}
    return Answer(start["status"], answer_headers, content)


def assert_error_answer(answer: Answer, status: int) -> dict:
    """The documented error shape: the status, JSON, a string ``detail``."""
    assert answer.status == status, answer.body[:500]
    assert answer.headers["content-type"] == "application/json", answer.headers
    body = answer.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def assert_good_result(body: dict) -> None:
    (result,) = body["results"]
    assert (result["width"], result["height"]) == GOOD_SIZE
    assert 0 <= result["normalized_score"] <= 1 and result["mask_png"] and result["overlay_png"]


async def assert_serves(app: FastAPI) -> None:
    """A good request right after: 200 with a correct result."""
    answer = await send_raw(
        app, "POST", f"/inspect/{RGB_CATEGORY}", headers={"content-type": "image/png"}, body=png(14, 20)
    )
    assert answer.status == 200, answer.body[:500]
    assert_good_result(answer.json())


# --- the live service ------------------------------------------------------------------------


@dataclass
class Live:
    """A running ``uvicorn app.main:app``: its base URL, process id, host and port."""

    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        assert self.server.pid is not None
        return self.server.pid

    def alive(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None

    def request(
        self, method: str, raw_target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        """One request over a fresh connection, the target (path and query) sent byte for byte."""
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            connection.putrequest(method, raw_target, skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                if value:
                    connection.putheader(key, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def assert_serves(self) -> None:
        answer = self.request("POST", f"/inspect/{RGB_CATEGORY}", png(14, 20), {"Content-Type": "image/png"})
        assert answer.status == 200, answer.body[:500]
        assert_good_result(answer.json())


def start_live(weights_dir: Path, *uvicorn_args: str, **env: str) -> RunningServer:
    """``uvicorn app.main:app [uvicorn_args]`` serving ``weights_dir`` on a free loopback port, not
    yet started; its log lies in ``weights_dir`` too, a test's temporary folder."""
    service_env = {"INSPECT_CODEC_WORKERS": "2", "INSPECT_TORCH_THREADS": "1", **env}
    any_checkpoint = next(weights_dir.glob("*.safetensors"))
    target = make_target("service", any_checkpoint, service_env=service_env)
    target = replace(target, command=target.command + uvicorn_args)
    return RunningServer(target, ready_timeout_s=60, log_dir=weights_dir)


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("live-weights")
    write_tiny_checkpoint(folder / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, channels=3, seed=0)
    write_tiny_checkpoint(folder / f"{GREY_CATEGORY}.safetensors", GREY_CATEGORY, channels=1, seed=1)
    with start_live(folder) as server:
        yield Live(server)
        assert server.process is not None and server.process.poll() is None, server.log_tail()
