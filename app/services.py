"""What the lifespan builds and the routes use: settings, registry, batcher, codec pool and API keys.

Held on ``app.state.services`` while the lifespan runs; routes get it through the ``get_services``
dependency, so a request that arrives outside the lifespan gets a clean 503.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from app.batcher import Batcher
from app.errors import ServiceStopping
from app.keys import ApiKeys
from app.registry import ModelRegistry
from app.settings import Settings


@dataclass
class Services:
    """Args:
    settings: as read at start.
    registry: the categories' checkpoints.
    batcher: the inference queue and worker.
    codec_pool: threads that decode uploads and render and encode PNGs.
    keys: the accepted API keys (none: open).
    """

    settings: Settings
    registry: ModelRegistry
    batcher: Batcher
    codec_pool: ThreadPoolExecutor
    keys: ApiKeys = field(default_factory=ApiKeys)


async def get_services(request: Request) -> Services:  # async: a sync dependency costs a thread hop
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise ServiceStopping("the service is not running (starting or shutting down)")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
