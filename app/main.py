"""The FastAPI application: ``create_app()`` builds it, its lifespan starts and stops the service.

Importing this module loads nothing: ``app = create_app()`` only wires routes and handlers. The
lifespan reads the settings (through the ``get_settings`` dependency, so test overrides apply),
resolves the device, lists the checkpoints, starts the codec pool and the inference worker, which
loads and warms up the models in the background while ``/healthz`` and ``/readyz`` already answer.
On exit the worker stops after its current batch, and images still waiting get 503.

Run it with ``uvicorn app.main:app`` (``make serve``).
"""

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from PIL import Image

import app as package
from app.batcher import Batcher, BatchPolicy
from app.device import resolve_device
from app.errors import install_error_handlers
from app.middleware import RequestContextMiddleware
from app.registry import ModelRegistry
from app.routes import categories, health, inspect
from app.services import Services
from app.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """
Visual inspection with per-category convolutional autoencoders (SSPCAB, Ristea et al., CVPR 2022).

Send images of a category to `POST /inspect/{category}` as a multipart form (parts named `file`)
or as a raw image body; get an anomaly score, a verdict, a defect mask and an overlay per image.
Requests arriving together share forward passes (dynamic batching). `GET /categories` lists the
models, `GET /readyz` says when they serve. Every error answers `{"detail": ...}`.
"""

TAGS = [
    {"name": "inspection", "description": "Score images and locate their defects."},
    {"name": "categories", "description": "The models this instance serves."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def resolved_settings(application: FastAPI) -> Settings:
    """The settings the routes see: the ``get_settings`` dependency, or its override."""
    return application.dependency_overrides.get(get_settings, get_settings)()


def configure_logging() -> None:
    """Show the service's INFO logs when nothing else set logging up (plain ``uvicorn app.main:app``)."""
    package_logger = logging.getLogger("app")
    if package_logger.handlers or logging.getLogger().handlers:
        return  # uvicorn --log-config, pytest or an embedding program decides
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)


def configure_pillow(max_image_pixels: int) -> None:
    """Pillow's own bomb guard, in line with ours: it refuses beyond twice the limit while opening."""
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    # Between 1× and 2× Pillow only warns; app.decode refuses those images itself (413).
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@asynccontextmanager
async def lifespan(application: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    settings = resolved_settings(application)
    device = resolve_device(settings.device)
    if device.type == "cpu":
        torch.set_num_threads(settings.cpu_torch_threads)
    configure_pillow(settings.max_image_pixels)
    registry = ModelRegistry(settings.weights_dir)
    policy = BatchPolicy(
        settings.max_batch_size, settings.max_batch_wait_ms / 1000, settings.request_timeout_s
    )
    batcher = Batcher(registry, device, policy, settings.max_queue)
    codec_pool = ThreadPoolExecutor(settings.codec_workers, thread_name_prefix="codec")
    logger.info(
        "serving %d categories from %s on %s (batch ≤ %d, wait ≤ %g ms, %d torch threads)",
        len(registry.entries),
        settings.weights_dir,
        device,
        settings.max_batch_size,
        settings.max_batch_wait_ms,
        torch.get_num_threads(),
    )
    batcher.start()
    application.state.services = Services(settings, registry, batcher, codec_pool)
    try:
        yield
    finally:
        application.state.services = None
        await asyncio.to_thread(batcher.stop)  # the loop stays free to answer waiting requests 503
        await asyncio.to_thread(codec_pool.shutdown)  # lets started decodes and encodes finish
        logger.info("stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; ``settings`` replaces the environment's (tests), else they are read at start."""
    application = FastAPI(
        title="sspcab-inspect",
        version=package.__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    if settings is not None:
        application.dependency_overrides[get_settings] = lambda: settings
    install_error_handlers(application)
    application.add_middleware(RequestContextMiddleware)
    for module in (inspect, categories, health):
        application.include_router(module.router)
    return application


app = create_app()
