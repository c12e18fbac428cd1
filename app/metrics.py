"""Prometheus metrics of the service, in a registry of its own per application (tests don't collide).

Every name starts with ``inspect_``. Labels stay bounded: ``category`` is a category the registry
knows (a request for any other name is counted as ``unknown``), ``status`` an HTTP status code,
``verdict`` ``anomalous`` or ``normal``, ``reason`` one of the fixed words of ``app.errors``.

- ``inspect_requests_total{category,status}`` and ``inspect_request_duration_seconds{category}``:
  ``POST /inspect/{category}`` requests, end to end (``app.access``).
- ``inspect_images_total{category,verdict}``: images scored.
- ``inspect_rejections_total{reason}``: requests refused, any endpoint (queue_full, timeout,
  too_large, bad_image, unauthorized, ...).
- ``inspect_batch_size{category}``, ``inspect_queue_wait_seconds{category}`` (per image, queue to
  forward pass) and ``inspect_batch_compute_seconds{category}``: from ``BatchStats`` listeners.
- ``inspect_queue_depth`` and ``inspect_model_state{category,state}`` (1 for the current state, 0
  for the others): read from the batcher and the registry at each scrape.
- ``inspect_batcher_images_total{category,outcome}``: every image the batcher was given, by what
  became of it (``BatchStats``, read at each scrape): ``computed``, ``failed`` (an error, or too
  large for the device even alone), ``cancelled`` (its client left), ``expired`` (waited past the
  request timeout), ``rejected`` (the queue was full). ``failed`` counts images, where
  ``inspect_rejections_total{reason="inference_failed"}`` counts requests.
- ``process_*``: memory, CPU and file descriptors of this process.
"""

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from app.registry import LoadState, ModelRegistry
from app.stats import BatchRecord

if TYPE_CHECKING:
    from app.batcher import Batcher

UNKNOWN_CATEGORY = "unknown"
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # up to INSPECT_MAX_BATCH_SIZE's limit
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
QUEUE_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMPUTE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# outcome label → BatchStats field
BATCHER_OUTCOMES = {
    "computed": "images",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
    "rejected": "rejected",
}


class ServingStateCollector(Collector):
    """The queue depth and the models' load states, read when Prometheus scrapes."""

    def __init__(self) -> None:
        self.models: ModelRegistry | None = None
        self.batcher: Batcher | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily("inspect_queue_depth", "Images waiting for inference, all categories.")
        depth.add_metric([], self.batcher.waiting if self.batcher is not None else 0)
        yield depth
        outcomes = CounterMetricFamily(
            "inspect_batcher_images",
            "Images given to the batcher, by category and outcome (computed, failed, cancelled, "
            "expired, rejected).",
            labels=["category", "outcome"],
        )
        stats = self.batcher.stats.snapshot() if self.batcher is not None else {}
        for category, counts in sorted(stats.items()):
            for outcome, field in BATCHER_OUTCOMES.items():
                outcomes.add_metric([category, outcome], counts[field])
        yield outcomes
        states = GaugeMetricFamily(
            "inspect_model_state",
            "Load state of each category's model: 1 for its current state, 0 for the others.",
            labels=["category", "state"],
        )
        entries = self.models.entries if self.models is not None else {}
        for category, entry in sorted(entries.items()):
            for state in LoadState:
                states.add_metric([category, state.value], 1.0 if entry.state == state else 0.0)
        yield states


class ServiceMetrics:
    """The service's metrics and the methods that move them; ``exposition()`` is the scrape answer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "inspect_requests",
            "Inspection requests answered, by category and HTTP status.",
            ["category", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "inspect_request_duration_seconds",
            "Inspection requests, end to end: from arrival to the last byte of the answer.",
            ["category"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.images = Counter(
            "inspect_images",
            "Images scored, by category and verdict (anomalous or normal).",
            ["category", "verdict"],
            registry=registry,
        )
        self.rejections = Counter(
            "inspect_rejections",
            "Requests refused, by reason (queue_full, timeout, too_large, bad_image, unauthorized, ...).",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "inspect_batch_size",
            "Images per forward pass.",
            ["category"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "inspect_queue_wait_seconds",
            "Per image, seconds from joining the queue to the start of its forward pass.",
            ["category"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.batch_compute = Histogram(
            "inspect_batch_compute_seconds",
            "Seconds per forward pass, results back on the CPU.",
            ["category"],
            buckets=COMPUTE_BUCKETS,
            registry=registry,
        )
        self.serving = ServingStateCollector()
        registry.register(self.serving)
        ProcessCollector(registry=registry)

    def watch(self, models: ModelRegistry | None, batcher: "Batcher | None") -> None:
        """Read the queue depth and the model states from these (None: stop reading them)."""
        self.serving.models, self.serving.batcher = models, batcher

    def category_label(self, category: str | None) -> str:
        """``category`` when the registry knows it, else ``unknown``: a URL cannot mint label values."""
        models = self.serving.models
        if category is not None and models is not None and category in models.entries:
            return category
        return UNKNOWN_CATEGORY

    def observe_request(self, category: str, status: int, duration_s: float) -> None:
        self.requests.labels(category, str(status)).inc()
        self.request_duration.labels(category).observe(duration_s)

    def observe_images(self, category: str, anomalous: Sequence[bool]) -> None:
        flagged = sum(anomalous)
        if flagged:
            self.images.labels(category, "anomalous").inc(flagged)
        if len(anomalous) - flagged:
            self.images.labels(category, "normal").inc(len(anomalous) - flagged)

    def observe_rejection(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def observe_batch(self, record: BatchRecord) -> None:
        """A ``BatchStats`` listener: runs on the inference worker after each computed batch."""
        self.batch_size.labels(record.category).observe(record.size)
        self.batch_compute.labels(record.category).observe(record.compute_s)
        waits = self.queue_wait.labels(record.category)
        for wait_s in record.queue_wait_s:
            waits.observe(wait_s)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Every metric, and its content type: OpenMetrics when ``accept`` asks for it, else Prometheus text."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
