"""Request ids on every answer, and unexpected errors answered as a bare 500 that names the id."""

import pytest

import app.routes.inspect
from tests.app.conftest import RGB_CATEGORY, png_bytes

pytestmark = pytest.mark.anyio


async def test_an_unexpected_error_is_a_bare_500_with_a_request_id(served, monkeypatch, caplog):
    _, client = served

    def explode(*args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.routes.inspect, "build_result", explode)
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}",
        content=png_bytes(),
        headers={"content-type": "image/png", "x-request-id": "abc-1"},
    )
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "abc-1"}
    assert response.headers["x-request-id"] == "abc-1"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "abc-1" in caplog.text and "secret internals" in caplog.text


async def test_request_ids_are_made_when_missing_or_unsafe(served):
    _, client = served
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    unsafe = await client.get("/healthz", headers={"x-request-id": "a b\tc"})
    assert unsafe.headers["x-request-id"] != "a b\tc"
