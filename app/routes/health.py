"""``GET /healthz`` (the process lives) and ``GET /readyz`` (the models serve), for orchestrators.

Readiness: 200 once every checkpoint has finished loading (ready or failed) and at least one is
ready; 503 while any is still loading, or when none could be loaded. A failed checkpoint beside
good ones does not hold readiness back (the good ones serve, and restarting would not mend the
file): it is listed under ``failed`` and in ``GET /categories``.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.registry import LoadState
from app.routes.openapi import DocumentedRoute
from app.schemas import Health, Readiness
from app.services import ServicesDep

router = APIRouter(tags=["health"], route_class=DocumentedRoute)


@router.get("/healthz", response_model=Health)
async def get_health() -> Health:
    """Report that the process is alive."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "still loading, or no checkpoint could be loaded"}},
)
async def get_readiness(services: ServicesDep) -> JSONResponse:
    """Report whether the models are loaded and serving."""
    entries = services.registry.entries.values()
    states = {entry.category: entry.state for entry in entries}
    failed = {entry.category: entry.error or "" for entry in entries if entry.state == LoadState.FAILED}
    ready_count = sum(state == LoadState.READY for state in states.values())
    loading = sum(state == LoadState.LOADING for state in states.values())
    if not states:
        detail = f"no checkpoints in {services.registry.weights_dir}"
    elif loading:
        detail = f"{loading} of {len(states)} categories still loading"
    else:
        detail = f"{ready_count} of {len(states)} categories ready" + (
            f"; {len(failed)} failed" if failed else ""
        )
    ready = services.registry.ready
    body = Readiness(ready=ready, detail=detail, categories=states, failed=failed)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)
