"""``POST /admin/reload``: pick up new, changed and removed checkpoints without a restart.

Needs an admin key (``app.auth``). The weights folder is scanned again; new and changed files are
loaded and warmed up on a loader thread while the current models go on serving, then swapped in
at once, between two batches (``ModelRegistry.reload``). A file that fails to load is reported
and leaves the model it would have replaced serving.
"""

import asyncio

from fastapi import APIRouter

from app.routes.openapi import DocumentedRoute, error_responses
from app.schemas import ReloadResult
from app.services import ServicesDep

router = APIRouter(tags=["operations"], route_class=DocumentedRoute)


@router.post("/admin/reload", response_model=ReloadResult, responses=error_responses(401, 403, 409, 503))
async def reload_models(services: ServicesDep) -> ReloadResult:
    """Re-scan the weights folder and swap in new and changed checkpoints."""
    batcher = services.batcher
    report = await asyncio.to_thread(services.registry.reload, batcher.device, batcher.prepare)
    return ReloadResult(
        loaded=report.loaded, unchanged=report.unchanged, failed=report.failed, removed=report.removed
    )
