"""The service's log lines: one JSON object per line for collectors, or plain text for people.

``INSPECT_LOG_FORMAT``: ``json``, ``text``, or ``auto`` (text when stderr is a terminal, JSON
otherwise, as in a container). A line's structured fields travel in ``extra={"fields": {...}}``:
the JSON formatter writes them as keys beside ``ts``, ``level``, ``logger`` and ``message``; the
text formatter shows the message alone, which reads on its own. Two kinds of line carry fields:
one per request (``app.access``) and one per computed batch (``log_batch``, below).
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from app.stats import BatchRecord

batch_logger = logging.getLogger("app.batches")

TEXT_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
HANDLER_NAME = "sspcab-inspect"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's fields, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def resolve_format(log_format: str, stream: Any = None) -> str:
    """``auto`` → ``text`` on a terminal, else ``json``; ``json`` and ``text`` stay."""
    if log_format != "auto":
        return log_format
    stream = stream if stream is not None else sys.stderr
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def configure_logging(log_format: str = "auto", level: int = logging.INFO) -> None:
    """Send the service's logs to stderr in ``log_format``, unless something else set logging up.

    Plain ``uvicorn app.main:app`` configures only uvicorn's own loggers, so the service adds its
    handler to the ``app`` logger; under ``uvicorn --log-config``, pytest or an embedding program
    (a handler on the root logger) it leaves everything as it is. Calling it again (a second
    lifespan) replaces its own handler.
    """
    package_logger = logging.getLogger("app")
    own = [h for h in package_logger.handlers if h.get_name() == HANDLER_NAME]
    for handler in own:
        package_logger.removeHandler(handler)
    if len(package_logger.handlers) or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.set_name(HANDLER_NAME)
    if resolve_format(log_format, handler.stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    package_logger.addHandler(handler)
    package_logger.setLevel(level)


def log_batch(record: BatchRecord) -> None:
    """A ``BatchStats`` listener: one line per computed batch."""
    if not batch_logger.isEnabledFor(logging.INFO):
        return
    waits = record.queue_wait_s
    longest_wait_ms = max(waits) * 1000 if waits else 0.0
    batch_logger.info(
        "batch %s: %d images, waited ≤ %.1f ms, computed in %.1f ms",
        record.category,
        record.size,
        longest_wait_ms,
        record.compute_s * 1000,
        extra={
            "fields": {
                "event": "batch",
                "category": record.category,
                "size": record.size,
                "queue_wait_ms_max": round(longest_wait_ms, 3),
                "queue_wait_ms_mean": round(sum(waits) / len(waits) * 1000, 3) if waits else 0.0,
                "compute_ms": round(record.compute_s * 1000, 3),
            }
        },
    )
