"""GET /metrics while the service works: the counters and histograms move as requests are served."""

import asyncio
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import (
    GREY_CATEGORY,
    RGB_CATEGORY,
    entered,
    make_settings,
    png_bytes,
    serve,
    spy_on,
    wait_until,
)

pytestmark = pytest.mark.anyio

PNG = {"content-type": "image/png"}


async def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def get(scraped, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def files(*blobs: bytes) -> list:
    return [("file", (f"img{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]


async def test_serving_moves_requests_images_batches_and_latency(served):
    _, client = served
    before = await scrape(client)
    assert get(before, "inspect_requests_total", category=RGB_CATEGORY, status="200") == 0
    assert get(before, "inspect_model_state", category=RGB_CATEGORY, state="ready") == 1
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}?include=", files=files(png_bytes(), png_bytes(seed=1))
    )
    assert response.status_code == 200
    verdicts = [result["is_anomalous"] for result in response.json()["results"]]
    after = await scrape(client)
    assert get(after, "inspect_requests_total", category=RGB_CATEGORY, status="200") == 1
    assert get(after, "inspect_request_duration_seconds_count", category=RGB_CATEGORY) == 1
    assert get(after, "inspect_request_duration_seconds_sum", category=RGB_CATEGORY) > 0
    scored = sum(
        get(after, "inspect_images_total", category=RGB_CATEGORY, verdict=v) for v in ("anomalous", "normal")
    )
    assert scored == 2
    assert get(after, "inspect_images_total", category=RGB_CATEGORY, verdict="anomalous") == sum(verdicts)
    assert get(after, "inspect_batch_size_sum", category=RGB_CATEGORY) == 2  # one pass of two (or two of one)
    assert get(after, "inspect_queue_wait_seconds_count", category=RGB_CATEGORY) == 2
    assert get(after, "inspect_batch_compute_seconds_count", category=RGB_CATEGORY) >= 1
    assert get(after, "inspect_queue_depth") == 0


async def test_refusals_count_by_reason_and_unknown_categories_share_a_label(weights_dir):
    settings = make_settings(weights_dir, max_images_per_request=1, max_queue=1)
    async with serve(settings) as (_, client):
        await client.post("/inspect/no-such-thing", content=png_bytes(), headers=PNG)
        await client.post("/inspect/another-typo", content=png_bytes(), headers=PNG)
        await client.post(f"/inspect/{RGB_CATEGORY}", files=files(png_bytes(), png_bytes()))
        await client.post(f"/inspect/{RGB_CATEGORY}", content=b"not an image", headers=PNG)
        await client.post(f"/inspect/{RGB_CATEGORY}?threshold=-1", content=png_bytes(), headers=PNG)
        scraped = await scrape(client)
    assert get(scraped, "inspect_requests_total", category="unknown", status="404") == 2
    assert not any("typo" in str(labels) or "no-such" in str(labels) for _, labels in scraped)
    assert get(scraped, "inspect_rejections_total", reason="unknown_category") == 2
    assert get(scraped, "inspect_rejections_total", reason="too_large") == 1
    assert get(scraped, "inspect_rejections_total", reason="bad_image") == 1
    assert get(scraped, "inspect_rejections_total", reason="invalid_request") == 1
    assert get(scraped, "inspect_requests_total", category=RGB_CATEGORY, status="413") == 1


async def test_queue_depth_and_queue_full(weights_dir):
    async with serve(make_settings(weights_dir, max_queue=16, max_batch_wait_ms=0)) as (application, client):
        gate = threading.Event()
        spy = spy_on(application, GREY_CATEGORY, gate=gate)  # holds the worker on a first batch
        holding = asyncio.ensure_future(
            client.post(f"/inspect/{GREY_CATEGORY}", content=png_bytes(channels=1), headers=PNG)
        )
        await entered(spy)
        waiting = asyncio.ensure_future(
            client.post(f"/inspect/{RGB_CATEGORY}", files=files(*[png_bytes(seed=i) for i in range(16)]))
        )
        await wait_until(lambda: application.state.services.batcher.waiting == 16)
        during = await scrape(client)
        refused = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers=PNG)
        gate.set()
        assert (await holding).status_code == 200 and (await waiting).status_code == 200
        after = await scrape(client)
    assert get(during, "inspect_queue_depth") == 16
    assert refused.status_code == 503
    assert get(after, "inspect_rejections_total", reason="queue_full") == 1
    assert get(after, "inspect_queue_depth") == 0
