"""Log lines: JSON objects with the record's fields, or text; the batch line; who sets logging up."""

import io
import json
import logging
import sys

import pytest

from app.logs import HANDLER_NAME, JsonFormatter, configure_logging, log_batch, resolve_format
from app.stats import BatchRecord


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(message: str = "hello %s", *args, fields=None, exc_info=None) -> logging.LogRecord:
    made = logging.LogRecord("app.test", logging.INFO, __file__, 1, message, args or ("world",), exc_info)
    if fields is not None:
        made.fields = fields
    return made


def test_a_json_line_holds_time_level_logger_message_and_fields():
    line = JsonFormatter().format(record(fields={"request_id": "abc", "status": 200, "scores": [0.5]}))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "hello world"
    assert (parsed["level"], parsed["logger"]) == ("INFO", "app.test")
    assert parsed["ts"].endswith("+00:00")
    assert (parsed["request_id"], parsed["status"], parsed["scores"]) == ("abc", 200, [0.5])


def test_a_json_line_carries_the_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        line = JsonFormatter().format(record(exc_info=sys.exc_info()))
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_auto_is_text_on_a_terminal_and_json_elsewhere():
    assert resolve_format("auto", Terminal()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Terminal()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"


def test_the_batch_line(caplog):
    with caplog.at_level(logging.INFO, logger="app.batches"):
        log_batch(BatchRecord("widget", queue_wait_s=(0.004, 0.002), compute_s=0.0125))
    (line,) = caplog.records
    assert line.getMessage() == "batch widget: 2 images, waited ≤ 4.0 ms, computed in 12.5 ms"
    assert line.fields == {
        "event": "batch",
        "category": "widget",
        "size": 2,
        "queue_wait_ms_max": 4.0,
        "queue_wait_ms_mean": 3.0,
        "compute_ms": 12.5,
    }


@pytest.fixture
def bare_logging(monkeypatch):
    """Call it in the test body (pytest adds its capture handlers to the root logger for the call):
    no handler on the root logger, as under plain uvicorn; the app logger is restored afterwards."""
    package = logging.getLogger("app")
    level = package.level

    def strip() -> logging.Logger:
        monkeypatch.setattr(logging.getLogger(), "handlers", [])
        monkeypatch.setattr(package, "handlers", [])
        return package

    yield strip
    package.setLevel(level)


def test_configure_logging_adds_one_handler_in_the_chosen_format(bare_logging):
    package = bare_logging()
    configure_logging("json", logging.WARNING)
    configure_logging("json", logging.WARNING)  # a second lifespan replaces it
    (handler,) = package.handlers
    assert handler.get_name() == HANDLER_NAME
    assert isinstance(handler.formatter, JsonFormatter)
    assert package.level == logging.WARNING
    configure_logging("text")
    (handler,) = package.handlers
    assert not isinstance(handler.formatter, JsonFormatter)


def test_configure_logging_leaves_a_configured_program_alone(bare_logging, monkeypatch):
    package = bare_logging()
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    configure_logging("json")
    assert package.handlers == []
