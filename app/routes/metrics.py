"""``GET /metrics``: the Prometheus scrape endpoint (see ``app.metrics`` for what it holds).

Open like the probes: a scraper carries no API key, and the metrics hold no image nor any key.
"""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.metrics import ServiceMetrics
from app.routes.openapi import DocumentedRoute

router = APIRouter(tags=["operations"], route_class=DocumentedRoute)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def get_metrics(request: Request) -> Response:
    """Expose the service's metrics in the Prometheus text format (or OpenMetrics, when asked)."""
    metrics: ServiceMetrics = request.app.state.metrics
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
