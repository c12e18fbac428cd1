"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), working without internet access.

FastAPI's own pages load their JavaScript and CSS from a CDN, and ReDoc its fonts from Google, so
on a factory network they stay blank. These pages load the same assets from this service, served
from the ``fastapi-offline`` package (Swagger UI and ReDoc bundles, MIT, refreshed upstream),
under ``/docs/assets/``. Swagger UI's online validator is switched off, so nothing leaves the site.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


def mount_assets(application: FastAPI) -> None:
    """Serve the Swagger UI and ReDoc bundles under ``ASSETS_PATH``."""
    application.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")


def _prefix(request: Request) -> str:
    """The path the service is mounted at behind a proxy (``--root-path``), without a trailing /."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root, application = _prefix(request), request.app
    return get_swagger_ui_html(
        openapi_url=f"{root}{application.openapi_url}",
        title=f"{application.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root, application = _prefix(request), request.app
    return get_redoc_html(
        openapi_url=f"{root}{application.openapi_url}",
        title=f"{application.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )
