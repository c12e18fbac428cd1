"""Fixtures of the service tests: a weights folder of tiny checkpoints, the app with its lifespan
running behind an httpx client, images as bytes, and a spy that wraps a detector to count, hold or
slow its forward passes."""

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from app.main import create_app
from app.settings import Settings
from tests.conftest import write_tiny_checkpoint

# Tiny checkpoints: 24×24 input. "widget" reads RGB, "gadget" greyscale.
RGB_CATEGORY, GREY_CATEGORY = "widget", "gadget"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    write_tiny_checkpoint(folder / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, channels=3, seed=0)
    write_tiny_checkpoint(folder / f"{GREY_CATEGORY}.safetensors", GREY_CATEGORY, channels=1, seed=1)
    return folder


def make_settings(weights_dir: Path, **overrides) -> Settings:
    values = {
        "weights_dir": weights_dir,
        "device": "cpu",
        "codec_workers": 2,
        "torch_threads": 1,
        **overrides,
    }
    return Settings(**values)


def random_image(height: int = 40, width: int = 30, channels: int = 3, seed: int = 0) -> np.ndarray:
    """(H, W, C) uint8 noise; squeeze C == 1 yourself for Pillow."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", **params) -> bytes:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_bytes(height: int = 40, width: int = 30, channels: int = 3, seed: int = 0) -> bytes:
    return encode(random_image(height, width, channels, seed))


async def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


@asynccontextmanager
async def serve(
    settings: Settings, wait_loaded: bool = True
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running (models loaded unless ``wait_loaded`` is False)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        if wait_loaded:
            await wait_until(lambda: app.state.services.registry.finished_loading)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inspect.test") as client:
            yield app, client


@pytest.fixture
async def served(weights_dir: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(make_settings(weights_dir)) as pair:
        yield pair


@pytest.fixture
def held_loading(monkeypatch) -> threading.Event:
    """Checkpoint loading waits (up to 5 s) until the returned event is set: the service stays loading."""
    import app.registry

    gate = threading.Event()
    real_load = app.registry.load_checkpoint

    def slow_load(path, device):
        gate.wait(5)
        return real_load(path, device)

    monkeypatch.setattr(app.registry, "load_checkpoint", slow_load)
    return gate


class RunsOutOfMemory:
    """A detector that raises CUDA's out-of-memory error (constructible on CPU) above ``fits`` images."""

    def __init__(self, inner, fits: int) -> None:
        self.inner, self.config, self.fits = inner, inner.config, fits
        self.batch_sizes: list[int] = []

    def __call__(self, x):
        self.batch_sizes.append(x.shape[0])
        if x.shape[0] > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


class SpyDetector:
    """Wraps a detector: records each forward pass's batch size, and can hold or slow it.

    Args:
        inner: the real detector.
        gate: when given, each pass waits for it (at most 5 s) after signalling ``entered``.
        delay_s: sleep added to each pass.
        error: raised instead of computing.
        log: a list, maybe shared between spies, that receives ``(label, batch size)`` per pass.
    """

    def __init__(
        self, inner, gate=None, delay_s: float = 0.0, error=None, log: list | None = None, label: str = ""
    ) -> None:
        self.inner = inner
        self.log, self.label = log, label
        self.config = inner.config
        self.gate = gate
        self.delay_s = delay_s
        self.error = error
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []

    def __call__(self, x):
        self.batch_sizes.append(x.shape[0])
        if self.log is not None:
            self.log.append((self.label, x.shape[0]))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self.inner(x)


def spy_on(app: FastAPI, category: str, **options) -> SpyDetector:
    """Replace a loaded category's detector with a SpyDetector around it."""
    checkpoint = app.state.services.registry.get(category).checkpoint
    spy = SpyDetector(checkpoint.detector, **options)
    checkpoint.detector = spy
    return spy


async def entered(spy: SpyDetector) -> None:
    await wait_until(spy.entered.is_set)
