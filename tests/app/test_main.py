"""The application: no work at import, settings through the dependency, clean start and stop,
errors without stack traces, request ids, and OpenAPI an integrator can work from."""

import asyncio
import threading

import httpx
import pytest

from app.main import create_app
from app.settings import SettingsError, get_settings
from tests.app.conftest import RGB_CATEGORY, entered, make_settings, png_bytes, serve, spy_on, wait_until

pytestmark = pytest.mark.anyio


def test_import_loads_nothing():
    import app.main as main

    assert main.app.dependency_overrides == {}
    assert getattr(main.app.state, "services", None) is None


async def test_invalid_environment_stops_the_start(monkeypatch):
    monkeypatch.setenv("INSPECT_MAX_BATCH_SIZE", "0")
    get_settings.cache_clear()
    try:
        application = create_app()
        with pytest.raises(SettingsError, match="INSPECT_MAX_BATCH_SIZE"):
            async with application.router.lifespan_context(application):
                pass
    finally:
        get_settings.cache_clear()


async def test_a_missing_weights_folder_stops_the_start(tmp_path):
    application = create_app(make_settings(tmp_path / "absent"))
    with pytest.raises(NotADirectoryError, match="INSPECT_WEIGHTS_DIR"):
        async with application.router.lifespan_context(application):
            pass


async def test_settings_come_from_the_dependency_override(weights_dir):
    settings = make_settings(weights_dir, max_batch_size=3)
    async with serve(settings) as (application, _):
        assert application.state.services.settings is settings
        assert application.state.services.batcher.policy.max_batch_size == 3


async def test_requests_outside_the_lifespan_get_503(weights_dir):
    application = create_app(make_settings(weights_dir))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://x"
    ) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503 and "not running" in response.json()["detail"]


async def test_shutdown_answers_waiting_requests_with_503(weights_dir):
    application = create_app(make_settings(weights_dir, max_batch_wait_ms=0))
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        lifespan = application.router.lifespan_context(application)
        await lifespan.__aenter__()
        services = application.state.services
        await wait_until(lambda: services.registry.finished_loading)
        gate = threading.Event()
        spy = spy_on(application, RGB_CATEGORY, gate=gate)
        url, headers = f"/inspect/{RGB_CATEGORY}", {"content-type": "image/png"}
        in_flight = asyncio.ensure_future(client.post(url, content=png_bytes(), headers=headers))
        await entered(spy)
        waiting = asyncio.ensure_future(client.post(url, content=png_bytes(seed=1), headers=headers))
        await wait_until(lambda: services.batcher.waiting == 1)
        stopping = asyncio.ensure_future(lifespan.__aexit__(None, None, None))
        response = await waiting
        assert response.status_code == 503
        assert "shutting down" in response.json()["detail"]
        gate.set()
        await stopping
        # uvicorn lets in-flight requests end before the lifespan stops; here the race is open.
        assert (await in_flight).status_code in (200, 503)
    assert not services.batcher._thread.is_alive()
    assert spy.batch_sizes == [1]


async def test_unknown_routes_and_methods_answer_json(served):
    _, client = served
    assert (await client.get("/nowhere")).json() == {"detail": "Not Found"}
    wrong = await client.get(f"/inspect/{RGB_CATEGORY}")
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Method Not Allowed"}


async def test_openapi_documents_both_inputs_every_error_and_the_png_answer(served):
    _, client = served
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/inspect/{category}"]["post"]
    assert operation["summary"] == "Inspect one or more images of a category for anomalies."
    assert operation["tags"] == ["inspection"]
    body = operation["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "image/jpeg", "image/bmp", "image/tiff"} <= set(body)
    responses = operation["responses"]
    assert {"200", "404", "406", "413", "415", "422", "500", "503", "504"} <= set(responses)
    assert {"application/json", "image/png"} <= set(responses["200"]["content"])
    assert "X-Anomalous" in responses["200"]["headers"]
    for code in ("404", "413", "415", "422", "503", "504"):
        content = responses[code]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorDetail"}
        assert "detail" in content["example"]
    assert "Retry-After" in responses["503"]["headers"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert {"category", "include", "threshold"} <= set(parameters)
    assert "examples" in schema["components"]["schemas"]["InspectionResponse"]
    for path in ("/categories", "/categories/{category}", "/healthz", "/readyz"):
        assert schema["paths"][path]["get"]["summary"]
