"""/docs and /redoc work offline: every script, style sheet and icon comes from this service."""

import re
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.anyio

REFERENCE = re.compile(r"""(?:src|href|url|spec-url)\s*[=:]\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_a_docs_page_references_no_other_host_and_its_assets_are_served(served, page):
    _, client = served
    response = await client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"(?:https?:)?//(?!inspect\.test)[\w.-]+", html), "a URL to another host"
    references = REFERENCE.findall(html)
    assert any(ref.endswith(".js") for ref in references)
    for reference in references:
        parts = urlsplit(reference)
        assert not parts.scheme and not parts.netloc, reference
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        assert asset.content, reference


async def test_swagger_ui_does_not_call_the_online_validator(served):
    _, client = served
    assert '"validatorUrl": null' in (await client.get("/docs")).text


async def test_the_pages_follow_a_proxy_prefix(served):
    application, _ = served
    transport = httpx.ASGITransport(app=application, root_path="/vision")
    async with httpx.AsyncClient(transport=transport, base_url="http://inspect.test") as client:
        swagger = (await client.get("/vision/docs")).text
        assert "/vision/docs/assets/swagger-ui-bundle.js" in swagger and "'/vision/openapi.json'" in swagger
        assert (await client.get("/vision/docs/assets/swagger-ui-bundle.js")).status_code == 200
        assert '"/vision/openapi.json"' in (await client.get("/vision/redoc")).text
