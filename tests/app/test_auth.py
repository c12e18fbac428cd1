"""API keys on the HTTP endpoints: 401 without a valid key where keys are set, open probes, metrics
and docs, admin-only reload (403 when disabled), and keys that never reach the logs."""

import logging

import pytest

from app.auth import RELOAD_DISABLED
from app.main import create_app
from app.settings import SettingsError
from tests.app.conftest import RGB_CATEGORY, make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio

CLIENT_KEY, ADMIN_KEY = "client-s3cret-1", "admin-s3cret-9"
PNG = {"content-type": "image/png"}
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")


@pytest.fixture
async def guarded(weights_dir):
    async with serve(make_settings(weights_dir, api_keys=CLIENT_KEY, admin_api_keys=ADMIN_KEY)) as pair:
        yield pair


async def test_client_endpoints_need_a_key(guarded):
    _, client = guarded
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": CLIENT_KEY[:-1]}):
        listing = await client.get("/categories", headers=headers)
        assert listing.status_code == 401, headers
        assert listing.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
        assert "X-API-Key" in listing.json()["detail"]
        inspection = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers=PNG | headers)
        assert inspection.status_code == 401
        assert (await client.get(f"/categories/{RGB_CATEGORY}", headers=headers)).status_code == 401
    assert (await client.get("/categories")).json()["detail"].startswith("missing API key")
    assert (
        (await client.get("/categories", headers={"x-api-key": "x"})).json()["detail"].startswith("invalid")
    )


async def test_a_valid_client_or_admin_key_is_served(guarded):
    _, client = guarded
    for key in (CLIENT_KEY, ADMIN_KEY):
        headers = {"x-api-key": key}
        assert (await client.get("/categories", headers=headers)).status_code == 200
        response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers=PNG | headers)
        assert response.status_code == 200, response.text


async def test_an_unknown_category_without_a_key_is_401_not_404(guarded):
    _, client = guarded
    assert (await client.post("/inspect/nothing-here", content=png_bytes(), headers=PNG)).status_code == 401


async def test_probes_metrics_and_docs_stay_open(guarded):
    _, client = guarded
    for path in OPEN_PATHS:
        assert (await client.get(path)).status_code == 200, path


async def test_without_keys_everything_is_open_and_reload_is_disabled(served):
    _, client = served
    assert (await client.get("/categories")).status_code == 200
    reload = await client.post("/admin/reload", headers={"x-api-key": "anything"})
    assert reload.status_code == 403
    assert reload.json() == {"detail": RELOAD_DISABLED}


async def test_reload_needs_an_admin_key(guarded):
    _, client = guarded
    assert (await client.post("/admin/reload")).status_code == 401
    assert (await client.post("/admin/reload", headers={"x-api-key": "wrong"})).status_code == 401
    with_client_key = await client.post("/admin/reload", headers={"x-api-key": CLIENT_KEY})
    assert with_client_key.status_code == 403 and "admin key" in with_client_key.json()["detail"]
    assert (await client.post("/admin/reload", headers={"x-api-key": ADMIN_KEY})).status_code == 200


async def test_admin_keys_alone_keep_the_client_endpoints_open(weights_dir):
    async with serve(make_settings(weights_dir, admin_api_keys=ADMIN_KEY)) as (_, client):
        assert (await client.get("/categories")).status_code == 200
        assert (await client.post("/admin/reload")).status_code == 401


async def test_openapi_declares_the_key_header(guarded):
    _, client = guarded
    schema = (await client.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schema["paths"]["/inspect/{category}"]["post"]["security"] == [{"ApiKey": []}]
    assert "401" in schema["paths"]["/categories"]["get"]["responses"]
    assert "security" not in schema["paths"]["/readyz"]["get"]


async def test_keys_never_reach_logs_answers_or_the_settings_repr(weights_dir, caplog):
    settings = make_settings(weights_dir, api_keys=CLIENT_KEY, admin_api_keys=ADMIN_KEY)
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    with caplog.at_level(logging.DEBUG):
        async with serve(settings) as (_, client):
            answers = [
                await client.get("/categories", headers={"x-api-key": "wrong-s3cret"}),
                await client.get("/categories", headers={"x-api-key": CLIENT_KEY}),
                await client.post("/admin/reload", headers={"x-api-key": CLIENT_KEY}),
                await client.post("/admin/reload", headers={"x-api-key": ADMIN_KEY}),
                await client.get("/metrics"),
            ]
    assert [a.status_code for a in answers] == [401, 200, 403, 200, 200]
    assert "s3cret" not in caplog.text
    assert all("s3cret" not in answer.text for answer in answers)
    assert "401" in caplog.text  # the refused request was logged, without its key


async def test_a_key_file_without_keys_stops_the_start(weights_dir, tmp_path):
    file = tmp_path / "keys"
    file.write_text("\n")
    application = create_app(make_settings(weights_dir, api_keys_file=file))
    with pytest.raises(SettingsError, match="INSPECT_API_KEYS_FILE"):
        async with application.router.lifespan_context(application):
            pass
