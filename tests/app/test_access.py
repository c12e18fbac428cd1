"""One log line per request with its id, category, status, images, scores and latency."""

import logging

import pytest

from app.access import printable, summary
from tests.app.conftest import RGB_CATEGORY, png_bytes

pytestmark = pytest.mark.anyio


def access_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "app.access"]


async def test_an_inspection_is_logged_once_with_its_verdicts(served, caplog):
    _, client = served
    with caplog.at_level(logging.INFO, logger="app.access"):
        response = await client.post(
            f"/inspect/{RGB_CATEGORY}?include=",
            files=[
                ("file", ("a.png", png_bytes(), "image/png")),
                ("file", ("b.png", png_bytes(seed=1), "image/png")),
            ],
            headers={"x-request-id": "req-42"},
        )
    assert response.status_code == 200
    (line,) = access_lines(caplog)
    fields = line.fields
    results = response.json()["results"]
    assert fields["event"] == "request" and fields["request_id"] == "req-42"
    assert (fields["method"], fields["path"], fields["status"]) == ("POST", f"/inspect/{RGB_CATEGORY}", 200)
    assert fields["category"] == RGB_CATEGORY and fields["images"] == 2
    assert fields["scores"] == [pytest.approx(r["score"], abs=1e-5) for r in results]
    assert fields["anomalous"] == [r["is_anomalous"] for r in results]
    assert fields["latency_ms"] > 0
    assert "rejection" not in fields
    assert line.getMessage().startswith(f"POST /inspect/{RGB_CATEGORY} → 200 in ")


async def test_a_refused_request_is_logged_with_its_reason_and_image_count(served, caplog):
    _, client = served
    with caplog.at_level(logging.INFO, logger="app.access"):
        await client.post(f"/inspect/{RGB_CATEGORY}", files=[("file", ("x.png", b"garbage", "image/png"))])
    (line,) = access_lines(caplog)
    assert line.fields["status"] == 422 and line.fields["rejection"] == "bad_image"
    assert line.fields["images"] == 1 and "scores" not in line.fields
    assert line.getMessage().endswith("(bad_image)")


async def test_probes_log_at_debug_only(served, caplog):
    _, client = served
    with caplog.at_level(logging.INFO, logger="app.access"):
        await client.get("/healthz")
        await client.get("/metrics")
    assert access_lines(caplog) == []
    with caplog.at_level(logging.DEBUG, logger="app.access"):
        await client.get("/readyz")
    assert [line.levelno for line in access_lines(caplog)] == [logging.DEBUG]


def test_the_text_summary_reads_alone():
    fields = {
        "method": "POST",
        "path": "/inspect/bottle",
        "status": 200,
        "latency_ms": 12.34,
        "images": 2,
        "scores": [0.1, 0.9],
        "anomalous": [False, True],
    }
    assert summary(fields) == "POST /inspect/bottle → 200 in 12.3 ms, 2 images: 0.1 normal, 0.9 anomalous"


def test_a_path_cannot_forge_a_log_line():
    assert printable("/inspect/a\nINFO fake line") == "/inspect/a\\nINFO fake line"
    assert printable("/inspect/bouteille-é") == "/inspect/bouteille-é"
