"""Counters of the batcher's work: forward passes, images, and images that never reached the model.

Read by tests to prove that concurrent requests share forward passes, and meant to back Prometheus
metrics later. Thread-safe: the inference worker writes, the event loop reads.
"""

import threading
from dataclasses import asdict, dataclass


@dataclass
class CategoryStats:
    batches: int = 0  # forward passes run
    images: int = 0  # images those passes computed
    cancelled: int = 0  # dropped before compute: the client had gone
    expired: int = 0  # dropped before compute: waited past the request timeout
    rejected: int = 0  # refused at the door: the queue was full


class BatchStats:
    """Per-category counters with totals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._categories: dict[str, CategoryStats] = {}

    def add(self, category: str, **counts: int) -> None:
        with self._lock:
            stats = self._categories.setdefault(category, CategoryStats())
            for name, count in counts.items():
                setattr(stats, name, getattr(stats, name) + count)

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
