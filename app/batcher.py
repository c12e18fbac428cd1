"""Dynamic batching: concurrent images of one category share a forward pass.

Each image of a request joins a per-category FIFO queue on its own. One inference worker thread per
device owns every model call (the event loop never waits on torch): it loads the checkpoints, then
loops on ``collect``, the pure function that decides from the queue state what runs next:

- a category is *due* when it holds ``max_batch_size`` images, or its oldest image has waited
  ``max_wait_s``, or no other request is on its way (being read or decoded: ``Batcher.incoming``),
  since waiting then only adds latency; the worker then runs up to ``max_batch_size`` of its oldest
  images together;
- among due categories the next one after the category served last, in name order, goes first
  (round robin), so a busy category cannot starve a quiet one;
- images whose client has gone (future cancelled) and images that waited ``timeout_s`` are dropped
  before compute.

A request is answered entirely by the model it was admitted with: its images carry that checkpoint,
so a hot reload that swaps the category's model while they wait changes neither the model that
scores them nor the version, thresholds and colour mode their answer was built for; the new model
takes the images admitted after the swap.

Results travel back through ``concurrent.futures.Future`` objects, which are thread-safe and cancel
atomically: an image is computed only if ``set_running_or_notify_cancel()`` succeeds. A request
awaits its futures with ``gather_results``. The design follows LitServe's batching loop
(``collate_requests``) and Triton's dynamic batcher (max batch size, max queue delay).
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from app.admission import Admission
from app.errors import ClientDisconnected, InferenceFailed, InferenceTimeout, QueueFull, ServiceStopping
from app.inference import ImageInference, run_in_halves, warm_up
from app.registry import ModelRegistry
from app.stats import BatchStats
from models.checkpoint import Checkpoint

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class WorkItem:
    """One image waiting for inference.

    Args:
        category: whose model scores it.
        image: (H, W, C) uint8.
        pixel_threshold: the request's override of the calibrated pixel threshold, or None.
        enqueued_at: ``time.monotonic()`` when it joined the queue.
        checkpoint: the model the request was admitted with; None: the category's model at compute time.
        future: receives its ImageInference or an InspectError.
    """

    category: str
    image: np.ndarray
    pixel_threshold: float | None
    enqueued_at: float
    checkpoint: Checkpoint | None = None
    future: Future = field(default_factory=Future)


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch runs. ``max_wait_s`` must be below ``timeout_s``, else images expire while waiting."""

    max_batch_size: int
    max_wait_s: float
    timeout_s: float

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not 0 <= self.max_wait_s < self.timeout_s:
            raise ValueError(
                f"max_wait_s must be >= 0 and less than timeout_s, got {self.max_wait_s} and {self.timeout_s}"
            )


@dataclass(frozen=True)
class Collection:
    """The collect step's decision.

    Args:
        category: the category whose batch runs now, or None.
        batch: its images, oldest first, at most ``max_batch_size``.
        expired: images that waited past the timeout, any category.
        cancelled: images whose client has gone, any category.
        wait_s: when nothing is due, seconds until the next category will be; None when nothing waits.
    """

    category: str | None = None
    batch: tuple[WorkItem, ...] = ()
    expired: tuple[WorkItem, ...] = ()
    cancelled: tuple[WorkItem, ...] = ()
    wait_s: float | None = None

    @property
    def taken(self) -> tuple[WorkItem, ...]:
        """Every item that leaves the queue."""
        return self.batch + self.expired + self.cancelled


def next_in_turn(due: Sequence[str], last_served: str | None) -> str:
    """Round robin: the first due category after ``last_served`` in name order, wrapping around."""
    order = sorted(due)
    later = [category for category in order if last_served is not None and category > last_served]
    return later[0] if later else order[0]


def collect(
    waiting: Mapping[str, Sequence[WorkItem]],
    last_served: str | None,
    now: float,
    policy: BatchPolicy,
    more_coming: bool = True,
) -> Collection:
    """Decide what the worker does next; reads the queue state, changes nothing.

    Args:
        waiting: per category, the queued items, oldest first.
        last_served: the category of the previous batch.
        now: the current ``time.monotonic()``.
        policy: batch size and waiting limits.
        more_coming: whether images are on their way; when not, a partial batch is due at once.
    """
    expired, cancelled = [], []
    live: dict[str, list[WorkItem]] = {}
    for category, items in waiting.items():
        for item in items:
            if item.future.cancelled():
                cancelled.append(item)
            elif now - item.enqueued_at >= policy.timeout_s:
                expired.append(item)
            else:
                live.setdefault(category, []).append(item)
    due_at = {category: items[0].enqueued_at + policy.max_wait_s for category, items in live.items()}
    due = [
        c
        for c, items in live.items()
        if len(items) >= policy.max_batch_size or due_at[c] <= now or not more_coming
    ]
    if not due:
        wait_s = min(due_at.values()) - now if due_at else None
        return Collection(expired=tuple(expired), cancelled=tuple(cancelled), wait_s=wait_s)
    category = next_in_turn(due, last_served)
    batch = tuple(live[category][: policy.max_batch_size])
    return Collection(category, batch, tuple(expired), tuple(cancelled))


class Batcher:
    """The queue and the inference worker thread of one device.

    Args:
        registry: the categories' models; the worker loads them when it starts.
        device: where the models run.
        policy: batch size and waiting limits.
        max_queue: most images waiting across all categories; beyond that ``submit`` raises QueueFull.
        stats: counters to update (a fresh one by default).
        max_in_flight: most requests in progress at once, from arrival to answer (``app.admission``);
            ``max_queue`` by default.
        max_pixels_in_flight: most decoded pixels held at once (``app.admission``); None: no limit.
        precision: what the networks compute in (``models.precision``), already checked for ``device``.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        device: torch.device,
        policy: BatchPolicy,
        max_queue: int,
        stats: BatchStats | None = None,
        max_in_flight: int | None = None,
        max_pixels_in_flight: int | None = None,
        precision: str = "float32",
    ) -> None:
        self.registry = registry
        self.device = device
        self.precision = precision
        self.policy = policy
        self.max_queue = max_queue
        self.stats = stats or BatchStats()
        self.admission = Admission(max_in_flight or max_queue, max_pixels_in_flight)
        self._queues: dict[str, deque[WorkItem]] = {}
        self._last_served: str | None = None
        self._incoming = 0  # requests being read or decoded (``incoming``)
        self._stopping = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=f"inference-{device}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def prepare(self, checkpoint: Checkpoint) -> None:
        """Ready a freshly loaded ``checkpoint`` to serve: one pass through the whole path, as this
        batcher will run it, and a warning if its thresholds were calibrated in another precision."""
        calibrated = checkpoint.calibration.details.get("precision", "float32")  # older: float32
        if calibrated != self.precision:
            logger.warning(
                "%s was calibrated with %s networks and is served in %s: scores near the thresholds "
                "can fall on the other side; `python -m training calibrate --precision %s` recalibrates it",
                checkpoint.category,
                calibrated,
                self.precision,
                self.precision,
            )
        warm_up(checkpoint, self.device, self.precision)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the worker after its current batch; waiting images fail with ServiceStopping (503)."""
        with self._condition:
            self._stopping = True
            waiting = [item for queue in self._queues.values() for item in queue]
            self._queues.clear()
            self._condition.notify_all()
        for item in waiting:
            settle(item, exception=ServiceStopping("the service is shutting down; retry on another instance"))
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("inference worker still busy after %.1f s; leaving it behind", timeout_s)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Around a request's reading, decoding and ``submit``: its images are on their way.

        While no request is, nothing more can join a partial batch, so it runs at once instead of
        waiting ``max_wait_s``: one camera alone pays no batching delay, and under load the wait
        still gathers the images that are arriving.
        """
        with self._condition:
            self._incoming += 1
        try:
            yield
        finally:
            with self._condition:
                self._incoming -= 1
                self._condition.notify()

    @property
    def waiting(self) -> int:
        """Images in the queue, all categories."""
        with self._condition:
            return sum(len(queue) for queue in self._queues.values())

    def submit(
        self,
        category: str,
        images: Sequence[np.ndarray],
        pixel_threshold: float | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> list[Future]:
        """Queue every image of a request (all or none); returns one future per image, in order.

        ``checkpoint`` pins the model that scores them (the one the request was decoded and will be
        answered for); None takes the category's model when the batch runs.
        """
        now = time.monotonic()
        items = [WorkItem(category, image, pixel_threshold, now, checkpoint) for image in images]
        with self._condition:
            if self._stopping:
                raise ServiceStopping("the service is shutting down; retry on another instance")
            waiting = sum(len(queue) for queue in self._queues.values())
            if waiting + len(items) > self.max_queue:
                self.stats.add(category, rejected=len(items))
                raise QueueFull(
                    f"the inference queue is full ({waiting} of {self.max_queue} images waiting); retry shortly"
                )
            self._queues.setdefault(category, deque()).extend(items)
            self._condition.notify()
        return [item.future for item in items]

    def _work(self) -> None:
        try:
            self.registry.load_all(self.device, self.prepare, lambda: self._stopping)
        except Exception:  # the registry records per-file failures; this is a bug, keep serving
            logger.exception("loading the checkpoints failed")
        while (collection := self._next()) is not None:
            try:
                self._handle(collection)
            except Exception as err:  # a bug in the bookkeeping: fail these images, keep the worker
                logger.exception("the inference worker failed handling a batch; it goes on")
                for item in collection.batch:
                    fail_unsettled(item, InferenceFailed(f"inference failed ({type(err).__name__})"))

    def _handle(self, collection: Collection) -> None:
        for item in collection.expired:
            timeout = self.policy.timeout_s
            if settle(item, exception=InferenceTimeout(f"the image waited more than {timeout:g} s")):
                self.stats.add(item.category, expired=1)
            else:
                self.stats.add(item.category, cancelled=1)
        for item in collection.cancelled:
            self.stats.add(item.category, cancelled=1)
        if collection.category is not None:
            self._run(collection.category, collection.batch)

    def _next(self) -> Collection | None:
        """Block until there is something to do; None once stopping."""
        with self._condition:
            while not self._stopping:
                collection = collect(
                    self._queues, self._last_served, time.monotonic(), self.policy, self._incoming > 0
                )
                if collection.taken:
                    self._remove(collection.taken)
                    if collection.category is not None:
                        self._last_served = collection.category
                    return collection
                self._condition.wait(collection.wait_s)
            return None

    def _remove(self, taken: Sequence[WorkItem]) -> None:
        ids = {id(item) for item in taken}
        for category in {item.category for item in taken}:
            remaining = deque(item for item in self._queues[category] if id(item) not in ids)
            if remaining:
                self._queues[category] = remaining
            else:
                del self._queues[category]

    def _run(self, category: str, batch: Sequence[WorkItem]) -> None:
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if len(live) < len(batch):
            self.stats.add(category, cancelled=len(batch) - len(live))
        if not live:
            return
        entry = self.registry.get(category)
        current = entry.checkpoint if entry is not None else None
        # Only across a reload do one category's images hold different models: one pass per model.
        groups: dict[int, tuple[Checkpoint | None, list[WorkItem]]] = {}
        for item in live:
            checkpoint = item.checkpoint if item.checkpoint is not None else current
            groups.setdefault(id(checkpoint), (checkpoint, []))[1].append(item)
        for checkpoint, items in groups.values():
            self._run_on(category, checkpoint, items)

    def _run_on(self, category: str, checkpoint: Checkpoint | None, live: Sequence[WorkItem]) -> None:
        started = time.monotonic()
        try:
            if checkpoint is None:
                raise LookupError(f"category {category!r} has no loaded model")
            results = run_in_halves(
                checkpoint,
                [item.image for item in live],
                [item.pixel_threshold for item in live],
                self.device,
                self.precision,
            )
        except Exception as err:
            logger.exception("inference of a batch of %d %r images failed", len(live), category)
            self.stats.add(category, failed=len(live))
            for item in live:
                item.future.set_exception(InferenceFailed(f"inference failed ({type(err).__name__})"))
            return
        computed = [
            item for item, result in zip(live, results, strict=True) if not isinstance(result, BaseException)
        ]
        if len(computed) < len(live):
            self.stats.add(category, failed=len(live) - len(computed))
        if computed:
            waits = [started - item.enqueued_at for item in computed]
            self.stats.batch_done(category, waits, time.monotonic() - started)
        for item, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):  # out of device memory even alone
                item.future.set_exception(
                    InferenceFailed(
                        f"inference failed ({type(result).__name__}): the image does not fit in device "
                        "memory even alone; send a smaller image"
                    )
                )
            else:
                item.future.set_result(result)


def fail_unsettled(item: WorkItem, exception: BaseException) -> None:
    """Fail an item whatever state its future is in, unless it already has its answer."""
    with contextlib.suppress(InvalidStateError):  # answered or cancelled already
        item.future.set_exception(exception)


def settle(item: WorkItem, *, exception: BaseException) -> bool:
    """Fail a queued item unless its client already cancelled it; True when it was failed."""
    if not item.future.set_running_or_notify_cancel():
        return False
    item.future.set_exception(exception)
    return True


async def gather_results(
    futures: Sequence[Future], timeout_s: float, disconnected: Awaitable[Any] | None = None
) -> list[ImageInference]:
    """Await a request's results, in order.

    Raises the first image's error; InferenceTimeout after ``timeout_s``; ClientDisconnected when
    ``disconnected`` completes first. Whatever ends the wait, the images not yet computed are
    cancelled, so the worker drops them before compute.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiters = [asyncio.wrap_future(future) for future in futures]
    watch = asyncio.ensure_future(disconnected) if disconnected is not None else None
    pending: set[asyncio.Future] = set(waiters)
    try:
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise InferenceTimeout(f"no result within the request timeout of {timeout_s:g} s")
            watched = pending | {watch} if watch is not None else pending
            done, _ = await asyncio.wait(watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if watch is not None and watch in done:
                raise ClientDisconnected("the client disconnected before the results were ready")
            pending -= done
            for waiter in done:
                if waiter.exception() is not None:
                    raise waiter.exception()  # type: ignore[misc]
        return [waiter.result() for waiter in waiters]
    finally:
        for future, waiter in zip(futures, waiters, strict=True):
            future.cancel()  # at once, thread-safe; a no-op once the worker has taken the image
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: asyncio would log errors nobody looked at
            waiter.cancel()
        if watch is not None:
            watch.cancel()
