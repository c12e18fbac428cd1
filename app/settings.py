"""Service settings: one pydantic-settings class, read once from ``INSPECT_*`` environment variables.

``get_settings()`` is the FastAPI dependency every part of the service reads them through (the
lifespan included, see ``app.main``), so a test overrides them in one place with
``app.dependency_overrides[get_settings]`` or ``create_app(settings)``. Invalid values stop the
start with a ``SettingsError`` that names the environment variable and the fix.
"""

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.cpus import usable_cpus

ENV_PREFIX = "INSPECT_"
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
API_KEY_PATTERN = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: safe in any HTTP header
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CUDA_BATCH_SIZE, CPU_BATCH_SIZE = 16, 2  # INSPECT_MAX_BATCH_SIZE when unset (Settings.batch_size_for)


def default_codec_workers() -> int:
    return min(8, usable_cpus())


def split_api_keys(text: str, separator: str | None = ",") -> list[str]:
    """The keys in ``text``: split on ``separator`` (None: lines; ``#`` starts a comment line), stripped.

    Raises:
        ValueError: a key holds a space or a character outside printable ASCII; the message never
            quotes the key.
    """
    pieces = (
        text.split(separator)
        if separator
        else [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    )
    keys = [piece.strip() for piece in pieces if piece.strip()]
    for index, key in enumerate(keys):
        if not API_KEY_PATTERN.fullmatch(key):
            raise ValueError(f"key {index + 1} holds a space or a character outside printable ASCII")
    return keys


class SettingsError(ValueError):
    """Settings that cannot start the service; the message names each variable at fault."""


class Settings(BaseSettings):
    """Everything an operator can tune, with the environment variable of each in its description."""

    # An empty variable counts as unset (``INSPECT_API_KEYS=`` in an env file leaves the default).
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True
    )

    weights_dir: Path = Field(Path("weights"), description="folder of <category>.safetensors checkpoints")
    device: str = Field("auto", description="auto (CUDA when available, else cpu), cpu, cuda or cuda:N")
    max_batch_size: int | None = Field(
        None,
        ge=1,
        le=1024,
        description=f"images stacked into one forward pass; unset: {CUDA_BATCH_SIZE} on CUDA, {CPU_BATCH_SIZE} on a CPU",
    )
    max_batch_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="longest wait for the oldest image before a partial batch runs"
    )
    max_queue: int = Field(256, ge=1, description="images waiting across all categories; beyond: 503")
    max_in_flight: int = Field(
        64, ge=1, description="inspections handled at once, arrival to answer; beyond: 503 (app.admission)"
    )
    request_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="longest wait for an image's inference; beyond: 504"
    )
    max_upload_mb: float = Field(20.0, gt=0, description="largest request body, in MiB; beyond: 413")
    upload_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="longest time to receive a request's body; beyond: 408"
    )
    max_image_pixels: int = Field(40_000_000, ge=1, description="largest image (width × height); beyond: 413")
    max_pixels_in_flight: int = Field(
        160_000_000,
        ge=1,
        description="pixels decoded at once, all requests (≈ 24 B each); beyond: 503, 413 alone",
    )
    max_images_per_request: int = Field(16, ge=1, description="most images in one request; beyond: 413")
    codec_workers: int = Field(
        default_factory=default_codec_workers, ge=1, le=256, description="threads that decode and encode"
    )
    torch_threads: int = Field(
        0, ge=0, le=256, description="torch intra-op threads on a CPU device; 0: one per usable CPU"
    )
    precision: Literal["float32", "bfloat16"] = Field(  # models.precision.PRECISIONS
        "float32",
        description="what the networks compute in: bfloat16 (refused where the device only emulates "
        "it) runs them faster on a GPU from Ampere on or a CPU with AMX or AVX512-BF16, and moves "
        "scores slightly off the float32 calibration; maps and scores stay float32",
    )
    api_keys: SecretStr | None = Field(
        None,
        description="comma-separated keys, one of which clients send as X-API-Key on /inspect and "
        "/categories; unset: those endpoints are open",
    )
    api_keys_file: Path | None = Field(
        None, description="file of client keys, one per line (# comments); adds to INSPECT_API_KEYS"
    )
    admin_api_keys: SecretStr | None = Field(
        None,
        description="comma-separated keys for /admin/reload (also accepted where a client key is); "
        "unset: reload is disabled",
    )
    admin_api_keys_file: Path | None = Field(
        None, description="file of admin keys, one per line; adds to INSPECT_ADMIN_API_KEYS"
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="json: one JSON object per line; text: for people; auto: text on a terminal"
    )
    log_level: str = Field(
        "INFO", description="DEBUG (adds health and metrics requests), INFO, WARNING, ERROR"
    )

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, value: str) -> str:
        value = value.strip().lower()
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _api_key_syntax(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            split_api_keys(value.get_secret_value())
        return value

    @field_validator("api_keys_file", "admin_api_keys_file")
    @classmethod
    def _key_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level_name(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> "Settings":
        if self.max_batch_wait_ms / 1000 >= self.request_timeout_s:
            raise ValueError(
                "INSPECT_MAX_BATCH_WAIT_MS must be less than INSPECT_REQUEST_TIMEOUT_S (in seconds), "
                "else every image would time out while its batch fills"
            )
        if self.max_queue < self.max_images_per_request:
            raise ValueError(
                "INSPECT_MAX_QUEUE must be at least INSPECT_MAX_IMAGES_PER_REQUEST, "
                "else a request with the most images could never be queued"
            )
        return self

    def batch_size_for(self, device_type: str) -> int:
        """``max_batch_size`` as set, else the device's: a GPU gains from large batches; on a CPU the
        per-image cost of the model rises once a forward pass holds more than about 8 views of an
        image (activations leave the caches). The default weights average 4 flipped views per
        image: 76 ms/image at 2 images, 103 at 4 on 2 cores; without flips 26.5 and 25.1
        (BENCHMARKS.md §1), so 2 there."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return CUDA_BATCH_SIZE if device_type == "cuda" else CPU_BATCH_SIZE

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def cpu_torch_threads(self) -> int:
        """Torch threads for CPU inference: as set, else one per core.

        The model is most of the CPU work of an inspection (with the default's four flipped views,
        about 158 of 175 ms of CPU per 512² image on this 2-core machine; decode and overlay encode
        about 15), so the codec threads mostly wait and the model should have every core. Leaving
        the codec pool's cores to it instead (the rule until 2026-11-27, which gave one thread on 2
        cores) measured worse at every load: demo weights, 2 cores, 32 clients 5.2 against 9.3
        images/s, one client 5.8 against 9.1; without the flips 18.8 against 20.8 and 12.0 against
        15.5 (BENCHMARKS.md §1). A host whose codecs dominate (large images, little model) can set
        INSPECT_TORCH_THREADS lower. "Core" means one this process may use (``app.cpus``): a
        container's CPU quota counts, not the host's cores.
        """
        return self.torch_threads or usable_cpus()

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


SECRET_FIELDS = frozenset(
    name for name, field in Settings.model_fields.items() if "SecretStr" in repr(field.annotation)
)


def load_settings(**overrides) -> Settings:
    """Settings from the environment (and ``overrides``), or a SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            message = error["msg"].removeprefix("Value error, ")
            secret = field in SECRET_FIELDS  # never echo a key, not even a malformed one
            shown = f" (got {error['input']!r})" if field and "input" in error and not secret else ""
            problems.append(f"{name}: {message}{shown}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once (FastAPI dependency)."""
    return load_settings()
