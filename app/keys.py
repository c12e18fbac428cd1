"""API keys: read once from the settings, compared in constant time.

Two sets, each from a comma-separated variable and an optional file of one key per line (a Docker
or Kubernetes secret): client keys (``INSPECT_API_KEYS``, ``INSPECT_API_KEYS_FILE``) and admin keys
(``INSPECT_ADMIN_API_KEYS``, ``INSPECT_ADMIN_API_KEYS_FILE``). An admin key is also accepted where
a client key is. A candidate is compared with ``hmac.compare_digest`` against every configured key,
so the time taken does not tell how much of a key was right or which key matched. Keys are never
logged nor quoted in a message; the settings hold them as ``SecretStr``. ``app.auth`` applies them.
"""

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from app.settings import ENV_PREFIX, Settings, SettingsError, split_api_keys


def _read_keys(secret: SecretStr | None, file: Path | None, variable: str) -> tuple[bytes, ...]:
    """The keys of ``<variable>`` and ``<variable>_FILE``, as bytes; SettingsError names the variable."""
    try:
        keys = split_api_keys(secret.get_secret_value()) if secret is not None else []
    except ValueError as err:
        raise SettingsError(f"{ENV_PREFIX}{variable}: {err}") from None
    if file is not None:
        name = f"{ENV_PREFIX}{variable}_FILE={file}"
        try:
            from_file = split_api_keys(file.read_text(encoding="utf-8"), separator=None)
        except (OSError, UnicodeDecodeError) as err:
            raise SettingsError(f"{name}: cannot read it ({type(err).__name__})") from None
        except ValueError as err:
            raise SettingsError(f"{name}: {err}") from None
        if not from_file:
            raise SettingsError(f"{name}: the file holds no key")
        keys += from_file
    return tuple(key.encode("ascii") for key in keys)


def _matches(candidate: str | None, keys: Iterable[bytes]) -> bool:
    """True when ``candidate`` equals one of ``keys``; compares with every key, in constant time each."""
    if not candidate:
        return False
    given = candidate.encode("latin-1", errors="replace")  # how Starlette decoded the header's bytes
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found


@dataclass(frozen=True)
class ApiKeys:
    """The accepted keys; empty ``client`` means open client endpoints, empty ``admin`` no reload."""

    client: tuple[bytes, ...] = ()
    admin: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "ApiKeys":
        return cls(
            client=_read_keys(settings.api_keys, settings.api_keys_file, "API_KEYS"),
            admin=_read_keys(settings.admin_api_keys, settings.admin_api_keys_file, "ADMIN_API_KEYS"),
        )

    def __repr__(self) -> str:  # never the keys themselves
        return f"ApiKeys(client={len(self.client)} keys, admin={len(self.admin)} keys)"

    def allows_client(self, candidate: str | None) -> bool:
        if not self.client:
            return True
        return _matches(candidate, self.client + self.admin)

    def is_admin(self, candidate: str | None) -> bool:
        return _matches(candidate, self.admin)
