"""Settings: defaults, INSPECT_* environment variables, and errors that name the variable."""

from typing import get_args

import pytest

from app.settings import Settings, SettingsError, get_settings, load_settings
from models.precision import PRECISIONS


def test_defaults_match_the_issue(monkeypatch):
    for name in ("WEIGHTS_DIR", "DEVICE", "MAX_BATCH_SIZE", "CODEC_WORKERS"):
        monkeypatch.delenv(f"INSPECT_{name}", raising=False)
    settings = load_settings()
    assert str(settings.weights_dir) == "weights"
    assert settings.device == "auto"
    assert (settings.max_batch_size, settings.max_batch_wait_ms, settings.max_queue) == (None, 5, 256)
    assert (settings.batch_size_for("cuda"), settings.batch_size_for("cpu")) == (16, 2)  # unset: per device
    assert (settings.request_timeout_s, settings.max_upload_mb) == (10, 20)
    assert (settings.max_image_pixels, settings.max_images_per_request) == (40_000_000, 16)
    assert 1 <= settings.codec_workers <= 8
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.torch_threads == 0 and settings.cpu_torch_threads >= 1


def test_cpu_torch_threads_default_to_one_per_core(monkeypatch):
    monkeypatch.setattr("app.settings.usable_cpus", lambda: 16)
    assert load_settings(codec_workers=8).cpu_torch_threads == 16
    assert load_settings(codec_workers=16).cpu_torch_threads == 16  # the codec threads mostly wait
    assert load_settings(codec_workers=8, torch_threads=3).cpu_torch_threads == 3
    assert load_settings().codec_workers == 8  # at most 8 by default
    monkeypatch.setattr("app.settings.usable_cpus", lambda: 2)  # e.g. a container limited to 2 CPUs
    assert (load_settings().cpu_torch_threads, load_settings().codec_workers) == (2, 2)


def test_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("INSPECT_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("INSPECT_DEVICE", "CUDA:1")
    monkeypatch.setenv("INSPECT_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("INSPECT_MAX_UPLOAD_MB", "0.5")
    settings = load_settings()
    assert settings.weights_dir == tmp_path
    assert settings.device == "cuda:1"
    assert settings.max_batch_size == 4
    assert settings.max_upload_bytes == 512 * 1024


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INSPECT_MAX_BATCH_SIZE", "0"),
        ("INSPECT_MAX_BATCH_SIZE", "many"),
        ("INSPECT_DEVICE", "gpu"),
        ("INSPECT_DEVICE", "cuda:x"),
        ("INSPECT_REQUEST_TIMEOUT_S", "-1"),
        ("INSPECT_MAX_UPLOAD_MB", "0"),
        ("INSPECT_MAX_IMAGE_PIXELS", "0"),
        ("INSPECT_CODEC_WORKERS", "0"),
        ("INSPECT_MAX_QUEUE", "0"),
    ],
)
def test_an_invalid_value_names_its_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_batch_wait_must_be_shorter_than_the_request_timeout():
    with pytest.raises(
        SettingsError, match="INSPECT_MAX_BATCH_WAIT_MS must be less than INSPECT_REQUEST_TIMEOUT_S"
    ):
        load_settings(max_batch_wait_ms=2000, request_timeout_s=1)


def test_queue_must_hold_the_largest_request():
    with pytest.raises(
        SettingsError, match="INSPECT_MAX_QUEUE must be at least INSPECT_MAX_IMAGES_PER_REQUEST"
    ):
        load_settings(max_queue=4, max_images_per_request=8)


def test_get_settings_is_read_once(monkeypatch):
    get_settings.cache_clear()
    try:
        first = get_settings()
        monkeypatch.setenv("INSPECT_MAX_BATCH_SIZE", "3")
        assert get_settings() is first
    finally:
        get_settings.cache_clear()


def test_settings_are_immutable():
    settings = Settings()
    with pytest.raises(ValueError):
        settings.max_batch_size = 2


def test_api_keys_are_secret_in_every_representation(monkeypatch):
    monkeypatch.setenv("INSPECT_API_KEYS", "k-s3cret-1,k-s3cret-2")
    monkeypatch.setenv("INSPECT_ADMIN_API_KEYS", "a-s3cret")
    settings = load_settings()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cret" not in shown
    assert settings.api_keys.get_secret_value() == "k-s3cret-1,k-s3cret-2"


def test_a_malformed_key_is_named_by_variable_never_quoted(monkeypatch):
    monkeypatch.setenv("INSPECT_ADMIN_API_KEYS", "fine,has space-s3cret")
    with pytest.raises(SettingsError, match="INSPECT_ADMIN_API_KEYS: key 2") as caught:
        load_settings()
    assert "s3cret" not in str(caught.value)


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("INSPECT_API_KEYS", "")
    monkeypatch.setenv("INSPECT_API_KEYS_FILE", "")
    monkeypatch.setenv("INSPECT_MAX_BATCH_SIZE", "")
    settings = load_settings()
    assert settings.api_keys is None and settings.api_keys_file is None and settings.max_batch_size is None


def test_log_settings(monkeypatch):
    monkeypatch.setenv("INSPECT_LOG_LEVEL", "debug")
    monkeypatch.setenv("INSPECT_LOG_FORMAT", "json")
    settings = load_settings()
    assert (settings.log_level, settings.log_level_number, settings.log_format) == ("DEBUG", 10, "json")
    monkeypatch.setenv("INSPECT_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="INSPECT_LOG_FORMAT"):
        load_settings()
    monkeypatch.setenv("INSPECT_LOG_FORMAT", "auto")
    monkeypatch.setenv("INSPECT_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError, match="INSPECT_LOG_LEVEL: must be one of DEBUG, INFO"):
        load_settings()


def test_the_precision_setting_accepts_exactly_the_models_precisions():
    assert get_args(Settings.model_fields["precision"].annotation) == PRECISIONS
