"""Faults inside the service: bad checkpoints beside good ones, a batch that raises, the device
running out of memory, clients that leave mid-upload or mid-inference. Each time the damage stays
with the requests it belongs to, and the service goes on answering."""

import asyncio
import json
import logging
import socket
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from app.decode import decode_image
from app.inference import run_batch
from app.registry import LoadState
from models.checkpoint import METADATA_KEY
from tests.app.conftest import (
    GREY_CATEGORY,
    RGB_CATEGORY,
    RunsOutOfMemory,
    entered,
    make_settings,
    png_bytes,
    serve,
    spy_on,
    wait_until,
)
from tests.app.hostile.conftest import assert_serves
from tests.conftest import write_tiny_checkpoint

pytestmark = pytest.mark.anyio

PNG = {"content-type": "image/png"}
URL = f"/inspect/{RGB_CATEGORY}"


# --- checkpoints -------------------------------------------------------------------------------


def rewrite_metadata(source: Path, target: Path, **changes) -> None:
    """Copy a checkpoint with some metadata fields changed (its tensors untouched)."""
    with safe_open(str(source), framework="pt") as f:
        metadata = json.loads(f.metadata()[METADATA_KEY])
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    save_file(tensors, str(target), metadata={METADATA_KEY: json.dumps({**metadata, **changes})})


@pytest.fixture
def mixed_weights(tmp_path: Path) -> Path:
    """Two good checkpoints and five bad ones in one folder."""
    folder = tmp_path / "weights"
    good = write_tiny_checkpoint(folder / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, channels=3)
    write_tiny_checkpoint(folder / f"{GREY_CATEGORY}.safetensors", GREY_CATEGORY, channels=1)
    data = good.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "empty.safetensors").write_bytes(b"")
    rewrite_metadata(good, folder / "future.safetensors", format_version=99)
    rewrite_metadata(good, folder / "alien.safetensors", model={"cae": {"widths": "wide"}})
    return folder


BAD = {
    "truncated": "not a readable safetensors file",
    "corrupt": "not a readable safetensors file",
    "empty": "not a readable safetensors file",
    "future": "format version 99 is not supported",
    "alien": "invalid model or calibration metadata",
}


async def test_bad_checkpoints_beside_good_ones_are_reported_and_the_good_ones_serve(mixed_weights):
    async with serve(make_settings(mixed_weights)) as (app, client):
        readiness = await client.get("/readyz")
        assert readiness.status_code == 200, readiness.text  # the good ones serve
        body = readiness.json()
        assert body["ready"] is True and "2 of 7 categories ready; 5 failed" in body["detail"]
        assert set(body["failed"]) == set(BAD)
        for category, reason in BAD.items():
            assert reason in body["failed"][category], body["failed"][category]
            assert body["failed"][category].startswith(f"{category}.safetensors: ")
            assert str(mixed_weights) not in body["failed"][category]  # no server paths to clients

        listed = {c["category"]: c for c in (await client.get("/categories")).json()["categories"]}
        assert {name for name, c in listed.items() if c["state"] == LoadState.FAILED} == set(BAD)
        assert listed[RGB_CATEGORY]["state"] == LoadState.READY

        for category in BAD:
            refused = await client.post(f"/inspect/{category}", content=png_bytes(), headers=PNG)
            assert refused.status_code == 503 and "failed to load" in refused.json()["detail"]
            assert refused.json()["state"] == "failed"
            await assert_serves(app)
        grey = await client.post(f"/inspect/{GREY_CATEGORY}", content=png_bytes(channels=1), headers=PNG)
        assert grey.status_code == 200


async def test_only_bad_checkpoints_is_not_ready(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "corrupt.safetensors").write_bytes(b"\0" * 100)
    async with serve(make_settings(folder)) as (_, client):
        readiness = await client.get("/readyz")
    assert readiness.status_code == 503 and readiness.json()["failed"]


# --- a batch that raises -----------------------------------------------------------------------


class FailsOnce:
    """Wraps a detector: the first forward pass raises, the others compute."""

    def __init__(self, inner) -> None:
        self.inner, self.config = inner, inner.config
        self.batch_sizes: list[int] = []

    def __call__(self, x):
        self.batch_sizes.append(x.shape[0])
        if len(self.batch_sizes) == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner(x)


async def test_an_exception_in_a_batch_fails_that_batch_only_and_the_worker_lives_on(weights_dir):
    settings = make_settings(weights_dir, max_batch_wait_ms=300, max_batch_size=4)  # room for three
    async with serve(settings) as (app, client):
        checkpoint = app.state.services.registry.get(RGB_CATEGORY).checkpoint
        failing = checkpoint.detector = FailsOnce(checkpoint.detector)
        same_batch = [client.post(URL, content=png_bytes(seed=s), headers=PNG) for s in range(3)]
        other = client.post(f"/inspect/{GREY_CATEGORY}", content=png_bytes(channels=1), headers=PNG)
        *failed, unaffected = await asyncio.gather(*same_batch, other)
        assert failing.batch_sizes == [3]  # the three shared the pass that raised
        for response in failed:
            assert response.status_code == 500
            assert response.json() == {
                "detail": "inference failed (RuntimeError)",
                "request_id": response.headers["x-request-id"],
            }
        assert len({r.headers["x-request-id"] for r in failed}) == 3
        assert unaffected.status_code == 200  # another category's batch
        assert app.state.services.batcher._thread.is_alive()
        await assert_serves(app)  # the next request on the same model succeeds
        assert failing.batch_sizes == [3, 1]


async def test_a_bug_in_the_bookkeeping_does_not_stop_the_worker(weights_dir, monkeypatch):
    async with serve(make_settings(weights_dir)) as (app, client):
        batcher = app.state.services.batcher
        real_run, calls = batcher._run, []

        def broken_once(category, batch):
            calls.append(len(batch))
            if len(calls) == 1:
                raise KeyError("a bug outside the forward pass")
            real_run(category, batch)

        monkeypatch.setattr(batcher, "_run", broken_once)
        first = await client.post(URL, content=png_bytes(), headers=PNG)
        assert first.status_code == 500 and first.json()["detail"] == "inference failed (KeyError)"
        assert batcher._thread.is_alive()
        await assert_serves(app)


# --- out of device memory ----------------------------------------------------------------------


async def test_out_of_memory_splits_the_batch_and_every_image_is_answered(weights_dir, caplog):
    async with serve(make_settings(weights_dir, max_batch_wait_ms=300, max_batch_size=8)) as (app, client):
        checkpoint = app.state.services.registry.get(RGB_CATEGORY).checkpoint
        blobs = [png_bytes(seed=seed) for seed in range(6)]
        alone = [
            run_batch(checkpoint, [decode_image(blob, "RGB", 10**6)], [None], torch.device("cpu"))[0].score
            for blob in blobs
        ]
        spy = checkpoint.detector = RunsOutOfMemory(checkpoint.detector, fits=2)
        with caplog.at_level(logging.WARNING, logger="app.inference"):
            responses = await asyncio.gather(
                *(client.post(URL, content=blob, headers=PNG, params={"include": ""}) for blob in blobs)
            )
        assert [r.status_code for r in responses] == [200] * 6
        assert [r.json()["results"][0]["score"] for r in responses] == pytest.approx(alone, rel=1e-5)
        assert spy.batch_sizes == [6, 3, 1, 2, 3, 1, 2]
        assert "out of device memory on a batch of 6 images; retrying as 3 + 3" in caplog.text


async def test_an_image_that_does_not_fit_alone_fails_alone(weights_dir):
    async with serve(make_settings(weights_dir)) as (app, client):
        checkpoint = app.state.services.registry.get(RGB_CATEGORY).checkpoint
        spy = checkpoint.detector = RunsOutOfMemory(checkpoint.detector, fits=0)
        response = await client.post(URL, content=png_bytes(), headers=PNG)
        assert response.status_code == 500
        assert response.json()["detail"].startswith("inference failed (OutOfMemoryError)")
        assert response.json()["request_id"] == response.headers["x-request-id"]
        spy.fits = 1
        await assert_serves(app)


# --- clients that leave ------------------------------------------------------------------------


async def disconnecting_upload(app, body_sent: bytes, declared: int) -> list[dict]:
    """A raw-PNG upload whose client sends ``body_sent`` of ``declared`` bytes, then disconnects."""
    messages = [
        {"type": "http.request", "body": body_sent, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"image/png"), (b"content-length", str(declared).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("inspect.test", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


async def test_a_client_that_leaves_mid_upload_is_dropped_quietly(served, caplog):
    app, _ = served
    batcher = app.state.services.batcher
    data = png_bytes(64, 64)
    with caplog.at_level(logging.INFO):
        sent = await disconnecting_upload(app, data[:100], len(data))
    assert sent[0]["status"] == 499  # never read: the client has gone
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text
    assert batcher.waiting == 0 and batcher.stats.images_run == 0
    await assert_serves(app)


def own_threads() -> set[str]:
    """The service's threads, less the pools that grow to a bound and keep idle threads: AnyIO's
    (sync dependencies) and the codec pool's."""
    pools = ("AnyIO worker thread", "codec_")
    return {t.name for t in threading.enumerate() if not t.name.startswith(pools)}


async def test_a_client_that_leaves_mid_inference_leaks_nothing(served):
    app, client = served
    batcher = app.state.services.batcher
    await assert_serves(app)  # the codec threads exist from here on
    tasks_before, threads_before = len(asyncio.all_tasks()), own_threads()
    gate = threading.Event()
    spy = spy_on(app, RGB_CATEGORY, gate=gate)
    in_forward = asyncio.ensure_future(client.post(URL, content=png_bytes(), headers=PNG))
    await entered(spy)
    # Clients queued behind the pass in flight, then gone (cancelling the task is leaving).
    leaving = [
        asyncio.ensure_future(client.post(URL, content=png_bytes(seed=s), headers=PNG)) for s in range(5)
    ]
    await wait_until(lambda: batcher.waiting == 5)
    for task in leaving:
        task.cancel()
    await asyncio.gather(*leaving, return_exceptions=True)
    gate.set()
    assert (await in_forward).status_code == 200
    await wait_until(lambda: batcher.waiting == 0)
    await wait_until(lambda: batcher.stats.category(RGB_CATEGORY).cancelled == 5)
    assert spy.batch_sizes == [1]  # the five were dropped before compute
    await assert_serves(app)
    assert batcher.waiting == 0
    assert len(asyncio.all_tasks()) <= tasks_before
    assert own_threads() == threads_before
    codec_threads = [t for t in threading.enumerate() if t.name.startswith("codec_")]
    assert len(codec_threads) <= app.state.services.settings.codec_workers


def test_a_client_that_leaves_mid_upload_over_the_wire(live):
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", live.server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /inspect/widget HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 100000\r\n\r\n" + png_bytes()[:50]
            )
    live.assert_serves()
    assert live.alive()
