"""Who may call what: the FastAPI dependencies that check the ``X-API-Key`` header.

- With client keys set (``INSPECT_API_KEYS``), ``/inspect`` and ``/categories`` need one of them or
  an admin key (401 otherwise); without, they are open. ``/healthz``, ``/readyz``, ``/metrics``,
  ``/docs``, ``/redoc`` and ``/openapi.json`` are always open: probes and scrapers carry no key.
- ``/admin/reload`` needs an admin key (``INSPECT_ADMIN_API_KEYS``): 401 without a key or with an
  unknown one, 403 with a client key. With no admin key configured it is disabled (403).

The keys themselves are read and compared in ``app.keys``.
"""

from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader

from app.errors import Forbidden, Unauthorized
from app.services import ServicesDep

API_KEY_HEADER = "X-API-Key"
RELOAD_DISABLED = "reload disabled: set INSPECT_ADMIN_API_KEYS"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="Required on /inspect and /categories when the service sets INSPECT_API_KEYS; "
    "an admin key (INSPECT_ADMIN_API_KEYS) for /admin/reload.",
    auto_error=False,
)

ApiKeyHeader = Annotated[str | None, Security(api_key_header)]


async def require_client_key(services: ServicesDep, key: ApiKeyHeader) -> None:
    """Dependency of the client endpoints: 401 unless the request carries an accepted key."""
    if not services.keys.allows_client(key):
        detail = "invalid API key" if key else "missing API key"
        raise Unauthorized(f"{detail}: send a valid key in the {API_KEY_HEADER} header")


async def require_admin_key(services: ServicesDep, key: ApiKeyHeader) -> None:
    """Dependency of the admin endpoints: 403 when disabled or for a client key, 401 without a valid key."""
    keys = services.keys
    if not keys.admin:
        raise Forbidden(RELOAD_DISABLED)
    if keys.is_admin(key):
        return
    if key and keys.client and keys.allows_client(key):
        raise Forbidden("this key is a client key; /admin endpoints need an admin key")
    detail = "invalid API key" if key else "missing API key"
    raise Unauthorized(f"{detail}: send an admin key in the {API_KEY_HEADER} header")
