"""What the lifespan builds and the routes use: settings, registry, batcher and codec pool.

Held on ``app.state.services`` while the lifespan runs; routes get it through the ``get_services``
dependency, so a request that arrives outside the lifespan gets a clean 503.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.batcher import Batcher
from app.errors import ServiceStopping
from app.registry import ModelRegistry
from app.settings import Settings


@dataclass
class Services:
    """Args:
    settings: as read at start.
    registry: the categories' checkpoints.
    batcher: the inference queue and worker.
    codec_pool: threads that decode uploads and render and encode PNGs.
    """

    settings: Settings
    registry: ModelRegistry
    batcher: Batcher
    codec_pool: ThreadPoolExecutor


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise ServiceStopping("the service is not running (starting or shutting down)")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
