"""POST /admin/reload: new and changed checkpoints swap in between batches; a broken one is reported
and leaves the old model serving."""

import asyncio
import threading

import pytest

from tests.app.conftest import RGB_CATEGORY, entered, make_settings, png_bytes, serve, spy_on, wait_until
from tests.conftest import write_tiny_checkpoint

pytestmark = pytest.mark.anyio

ADMIN = {"x-api-key": "admin-key-1"}
PNG = {"content-type": "image/png"}


@pytest.fixture
async def admin_served(weights_dir):
    async with serve(make_settings(weights_dir, admin_api_keys=ADMIN["x-api-key"])) as pair:
        yield pair


async def version_used(client) -> str:
    response = await client.post(f"/inspect/{RGB_CATEGORY}?include=", content=png_bytes(), headers=PNG)
    assert response.status_code == 200, response.text
    return response.json()["model"]["version"]


async def test_a_changed_checkpoint_serves_after_reload(admin_served, weights_dir):
    _, client = admin_served
    old_version = await version_used(client)
    write_tiny_checkpoint(weights_dir / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, seed=5)
    write_tiny_checkpoint(weights_dir / "bottle.safetensors", "bottle", seed=6)
    response = await client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {
        "loaded": ["bottle", RGB_CATEGORY],
        "unchanged": ["gadget"],
        "failed": {},
        "removed": [],
    }
    new_version = await version_used(client)
    assert new_version != old_version
    categories = (await client.get("/categories")).json()["categories"]
    assert {c["category"]: c["version"] for c in categories}[RGB_CATEGORY] == new_version
    assert (await client.get("/readyz")).json()["categories"]["bottle"] == "ready"


async def test_a_broken_checkpoint_is_reported_and_the_old_model_keeps_serving(admin_served, weights_dir):
    _, client = admin_served
    old_version = await version_used(client)
    (weights_dir / f"{RGB_CATEGORY}.safetensors").write_bytes(b"\x00" * 64)
    response = await client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert list(body["failed"]) == [RGB_CATEGORY]
    assert body["failed"][RGB_CATEGORY].startswith(f"{RGB_CATEGORY}.safetensors: ")
    assert body["loaded"] == [] and body["removed"] == []
    assert await version_used(client) == old_version
    metrics = (await client.get("/metrics")).text
    assert f'inspect_model_state{{category="{RGB_CATEGORY}",state="ready"}} 1.0' in metrics


async def test_a_removed_checkpoint_stops_serving(admin_served, weights_dir):
    _, client = admin_served
    (weights_dir / f"{RGB_CATEGORY}.safetensors").unlink()
    assert (await client.post("/admin/reload", headers=ADMIN)).json()["removed"] == [RGB_CATEGORY]
    response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers=PNG)
    assert response.status_code == 404


async def test_the_swap_waits_for_no_batch_and_the_running_batch_keeps_its_model(admin_served, weights_dir):
    application, client = admin_served
    gate = threading.Event()
    old = spy_on(application, RGB_CATEGORY, gate=gate)
    in_flight = asyncio.ensure_future(
        client.post(f"/inspect/{RGB_CATEGORY}?include=", content=png_bytes(), headers=PNG)
    )
    await entered(old)  # a batch is inside the old model's forward pass
    write_tiny_checkpoint(weights_dir / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, seed=9)
    reload = await client.post("/admin/reload", headers=ADMIN)  # completes while the batch is held
    assert reload.json()["loaded"] == [RGB_CATEGORY]
    gate.set()
    assert (await in_flight).status_code == 200
    await version_used(client)
    assert old.batch_sizes == [1]  # the held batch ran on the old model, the next one did not


async def test_a_request_queued_before_the_swap_is_answered_by_the_model_it_was_admitted_with(
    admin_served, weights_dir
):
    application, client = admin_served
    old_version = await version_used(client)
    gate = threading.Event()
    old = spy_on(application, RGB_CATEGORY, gate=gate)
    post = f"/inspect/{RGB_CATEGORY}?include="
    running = asyncio.ensure_future(client.post(post, content=png_bytes(), headers=PNG))
    await entered(old)
    queued = asyncio.ensure_future(client.post(post, content=png_bytes(seed=1), headers=PNG))
    await wait_until(lambda: application.state.services.batcher.waiting == 1)
    write_tiny_checkpoint(weights_dir / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, seed=9)
    assert (await client.post("/admin/reload", headers=ADMIN)).json()["loaded"] == [RGB_CATEGORY]
    gate.set()
    answers = [(await running).json(), (await queued).json()]
    # Scored by the old model, and named after it, with its thresholds: one model per answer.
    assert old.batch_sizes == [1, 1]
    assert [a["model"]["version"] for a in answers] == [old_version, old_version]
    assert await version_used(client) != old_version and old.batch_sizes == [1, 1]


async def test_reload_before_the_first_load_ends_is_409(weights_dir, held_loading):
    gate = held_loading
    settings = make_settings(weights_dir, admin_api_keys=ADMIN["x-api-key"])
    async with serve(settings, wait_loaded=False) as (_, client):
        response = await client.post("/admin/reload", headers=ADMIN)
        gate.set()
    assert response.status_code == 409 and "still loading" in response.json()["detail"]
