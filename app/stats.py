"""Counters of the batcher's work: forward passes, images, and images that never reached the model.

Read by tests to prove that concurrent requests share forward passes, and at each scrape by the
Prometheus metrics (``inspect_batcher_images_total``). Each forward pass is also
told, as a ``BatchRecord`` (size, queue waits, compute time), to the listeners registered with
``listen``: the Prometheus metrics (``app.metrics``) and the batch log line (``app.logs``).
Thread-safe: the inference worker writes, the event loop reads.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)


@dataclass
class CategoryStats:
    batches: int = 0  # forward passes run
    images: int = 0  # images those passes computed
    failed: int = 0  # reached the model and got no result: an error, or too large for the device alone
    cancelled: int = 0  # dropped before compute: the client had gone
    expired: int = 0  # dropped before compute: waited past the request timeout
    rejected: int = 0  # refused at the door: the queue was full


@dataclass(frozen=True)
class BatchRecord:
    """One forward pass that computed its images.

    Args:
        category: whose model ran.
        queue_wait_s: per image, seconds from joining the queue to the start of the pass.
        compute_s: seconds the pass took, results back on the CPU.
    """

    category: str
    queue_wait_s: tuple[float, ...]
    compute_s: float

    @property
    def size(self) -> int:
        return len(self.queue_wait_s)


BatchListener = Callable[[BatchRecord], None]


class BatchStats:
    """Per-category counters with totals, and listeners told of every computed batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._categories: dict[str, CategoryStats] = {}
        self._listeners: list[BatchListener] = []

    def listen(self, listener: BatchListener) -> None:
        """Call ``listener`` on the worker thread after each computed batch; it must be quick."""
        self._listeners.append(listener)

    def add(self, category: str, **counts: int) -> None:
        with self._lock:
            stats = self._categories.setdefault(category, CategoryStats())
            for name, count in counts.items():
                setattr(stats, name, getattr(stats, name) + count)

    def batch_done(self, category: str, queue_wait_s: Sequence[float], compute_s: float) -> None:
        """Count a computed batch (one pass, ``len(queue_wait_s)`` images) and tell the listeners."""
        record = BatchRecord(category, tuple(queue_wait_s), compute_s)
        self.add(category, batches=1, images=record.size)
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:  # observing must never fail a batch whose results are ready
                logger.exception("batch listener %r failed", listener)

    def category(self, category: str) -> CategoryStats:
        with self._lock:
            return CategoryStats(**asdict(self._categories.get(category, CategoryStats())))

    @property
    def batches_run(self) -> int:
        with self._lock:
            return sum(s.batches for s in self._categories.values())

    @property
    def images_run(self) -> int:
        with self._lock:
            return sum(s.images for s in self._categories.values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: asdict(stats) for name, stats in self._categories.items()}
