"""The FastAPI application: ``create_app()`` builds it, its lifespan starts and stops the service.

Importing this module loads nothing: ``app = create_app()`` only wires routes, handlers,
middleware and the metrics registry. The lifespan reads the settings (through the ``get_settings``
dependency, so test overrides apply), sets up logging, reads the API keys, resolves the device,
lists the checkpoints, starts the codec pool and the inference worker, which loads and warms up
the models in the background while ``/healthz`` and ``/readyz`` already answer. On exit the worker
stops after its current batch, and images still waiting get 503.

Client endpoints (``/inspect``, ``/categories``) need a key when keys are set, ``/admin`` an admin
key (``app.auth``); probes, ``/metrics`` and the offline docs (``/docs``, ``/redoc``) are open.

Run it with ``uvicorn app.main:app --no-access-log`` (``make serve``; the service logs each
request itself, see ``app.access``), one process per GPU.
"""

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI
from PIL import Image

import app as package
from app.access import AccessMiddleware
from app.admission import AdmissionMiddleware
from app.auth import require_admin_key, require_client_key
from app.batcher import Batcher, BatchPolicy
from app.device import resolve_device, resolve_precision
from app.errors import install_error_handlers
from app.keys import ApiKeys
from app.logs import configure_logging, log_batch
from app.metrics import ServiceMetrics
from app.middleware import RequestContextMiddleware
from app.registry import ModelRegistry
from app.routes import admin, categories, docs, health, inspect, metrics
from app.routes.openapi import error_responses
from app.services import Services
from app.settings import Settings, get_settings
from app.stats import BatchStats

logger = logging.getLogger(__name__)

DESCRIPTION = """
Visual inspection with per-category convolutional autoencoders (SSPCAB, Ristea et al., CVPR 2022).

Send images of a category to `POST /inspect/{category}` as a multipart form (parts named `file`)
or as a raw image body; get an anomaly score, a verdict, a defect mask and an overlay per image.
Requests arriving together share forward passes (dynamic batching). `GET /categories` lists the
models, `GET /readyz` says when they serve. Every error answers `{"detail": ...}`.

When the service sets API keys, send one in the `X-API-Key` header (the Authorize button here).
`GET /metrics` serves Prometheus metrics; `POST /admin/reload` (admin key) picks up new weights.
"""

TAGS = [
    {"name": "inspection", "description": "Score images and locate their defects."},
    {"name": "categories", "description": "The models this instance serves."},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "operations", "description": "Prometheus metrics and model reloads."},
]


def resolved_settings(application: FastAPI) -> Settings:
    """The settings the routes see: the ``get_settings`` dependency, or its override."""
    return application.dependency_overrides.get(get_settings, get_settings)()


def configure_pillow(max_image_pixels: int) -> None:
    """Pillow's own bomb guard, in line with ours: it refuses beyond twice the limit while opening."""
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    # Between 1× and 2× Pillow only warns; app.decode refuses those images itself (413).
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@asynccontextmanager
async def lifespan(application: FastAPI) -> AsyncIterator[None]:
    settings = resolved_settings(application)
    configure_logging(settings.log_format, settings.log_level_number)
    keys = ApiKeys.from_settings(settings)
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    if device.type == "cpu":
        torch.set_num_threads(settings.cpu_torch_threads)
    configure_pillow(settings.max_image_pixels)
    registry = ModelRegistry(settings.weights_dir)
    policy = BatchPolicy(
        settings.batch_size_for(device.type), settings.max_batch_wait_ms / 1000, settings.request_timeout_s
    )
    service_metrics: ServiceMetrics = application.state.metrics
    stats = BatchStats()
    stats.listen(service_metrics.observe_batch)
    stats.listen(log_batch)
    batcher = Batcher(
        registry,
        device,
        policy,
        settings.max_queue,
        stats,
        settings.max_in_flight,
        settings.max_pixels_in_flight,
        precision,
    )
    codec_pool = ThreadPoolExecutor(settings.codec_workers, thread_name_prefix="codec")
    logger.info(
        "serving %d categories from %s on %s in %s (batch ≤ %d, wait ≤ %g ms, %d torch threads; %s)",
        len(registry.entries),
        settings.weights_dir,
        device,
        precision,
        policy.max_batch_size,
        settings.max_batch_wait_ms,
        torch.get_num_threads(),
        f"{len(keys.client)} client keys" if keys.client else "no client key: open",
    )
    batcher.start()
    service_metrics.watch(registry, batcher)
    application.state.services = Services(settings, registry, batcher, codec_pool, keys)
    try:
        yield
    finally:
        application.state.services = None
        service_metrics.watch(None, None)
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
        docs_url=None,  # app.routes.docs serves both pages without a CDN
        redoc_url=None,
        redirect_slashes=False,  # /inspect/x/ is 404 JSON, not a 307 that makes clients resend the body
    )
    if settings is not None:
        application.dependency_overrides[get_settings] = lambda: settings
    application.state.metrics = service_metrics = ServiceMetrics()
    install_error_handlers(application)
    application.add_middleware(AdmissionMiddleware)  # innermost: refusals still get ids and logs
    application.add_middleware(RequestContextMiddleware)
    application.add_middleware(AccessMiddleware, metrics=service_metrics)  # outermost: times it all
    client, admin_only = [Depends(require_client_key)], [Depends(require_admin_key)]
    for module in (inspect, categories):
        application.include_router(module.router, dependencies=client, responses=error_responses(401))
    application.include_router(admin.router, dependencies=admin_only)
    for module in (health, metrics, docs):
        application.include_router(module.router)
    docs.mount_assets(application)
    return application


app = create_app()
