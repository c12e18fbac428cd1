"""GET /healthz and /readyz: alive at once, ready once every checkpoint has loaded and one serves."""

import pytest

from tests.app.conftest import RGB_CATEGORY, make_settings, png_bytes, serve, wait_until

pytestmark = pytest.mark.anyio


async def test_ready_only_after_loading(weights_dir, held_loading):
    gate = held_loading
    async with serve(make_settings(weights_dir), wait_loaded=False) as (application, client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        before = await client.get("/readyz")
        assert before.status_code == 503
        assert before.json()["ready"] is False
        assert set(before.json()["categories"].values()) == {"loading"}
        loading = await client.post(
            f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers={"content-type": "image/png"}
        )
        assert loading.status_code == 503 and loading.headers["retry-after"] == "1"
        assert loading.json()["state"] == "loading"
        gate.set()
        await wait_until(lambda: application.state.services.registry.finished_loading)
        after = await client.get("/readyz")
        assert after.status_code == 200
        assert after.json() == {
            "ready": True,
            "detail": "2 of 2 categories ready",
            "categories": {"gadget": "ready", "widget": "ready"},
            "failed": {},
        }


async def test_ready_beside_a_failed_checkpoint_which_is_reported(weights_dir):
    (weights_dir / "cracked.safetensors").write_bytes(b"junk")
    async with serve(make_settings(weights_dir)) as (_, client):
        response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["categories"]["cracked"] == "failed"
    assert body["failed"]["cracked"].startswith("cracked.safetensors: ")
    assert body["detail"] == "2 of 3 categories ready; 1 failed"


async def test_not_ready_without_any_model(tmp_path):
    async with serve(make_settings(tmp_path)) as (_, client):
        response = await client.get("/readyz")
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 503
    assert response.json()["detail"].startswith("no checkpoints in ")
