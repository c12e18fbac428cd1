"""Dynamic batcher: the pure collect step, then the worker thread and the async wait for results."""

import asyncio
import copy
import threading
import time
from concurrent.futures import Future

import pytest
import torch

from app.batcher import Batcher, BatchPolicy, Collection, WorkItem, collect, gather_results, next_in_turn
from app.errors import ClientDisconnected, InferenceFailed, InferenceTimeout, QueueFull, ServiceStopping
from app.inference import ImageInference
from app.registry import ModelRegistry
from tests.app.conftest import GREY_CATEGORY, RGB_CATEGORY, RunsOutOfMemory, SpyDetector, random_image

POLICY = BatchPolicy(max_batch_size=3, max_wait_s=0.010, timeout_s=1.0)


def item(category: str, enqueued_at: float) -> WorkItem:
    return WorkItem(category, image=None, pixel_threshold=None, enqueued_at=enqueued_at)


# --- the collect step: a pure function of the queue state -------------------------------------


def test_nothing_waiting_means_wait_for_a_submit():
    assert collect({}, None, now=5.0, policy=POLICY) == Collection(wait_s=None)


def test_a_young_image_waits_for_company_until_max_wait():
    waiting = {"a": [item("a", 10.000)]}
    collection = collect(waiting, None, now=10.004, policy=POLICY)
    assert collection.batch == () and collection.wait_s == pytest.approx(0.006)
    due = collect(waiting, None, now=10.010, policy=POLICY)
    assert due.category == "a" and due.batch == tuple(waiting["a"])


def test_a_partial_batch_runs_at_once_when_no_image_is_on_its_way():
    waiting = {"a": [item("a", 10.000), item("a", 10.001)]}
    collection = collect(waiting, None, now=10.002, policy=POLICY, more_coming=False)
    assert collection.category == "a" and collection.batch == tuple(waiting["a"])


def test_a_lone_request_is_computed_without_waiting_for_company(make_batcher):
    batcher = make_batcher(BatchPolicy(max_batch_size=8, max_wait_s=30.0, timeout_s=60.0))
    detector = spy(batcher, RGB_CATEGORY)
    with batcher.incoming():
        futures = batcher.submit(RGB_CATEGORY, [random_image()])
        time.sleep(0.2)
        assert not futures[0].done()  # a request is on its way (this one): wait for company
    # Nothing more is coming: it runs now, not after the 30 s max_wait.
    assert isinstance(futures[0].result(timeout=10), ImageInference)
    assert detector.batch_sizes == [1]


def test_a_full_batch_runs_at_once_oldest_first_and_capped():
    queue = [item("a", 10.0 + i * 1e-4) for i in range(5)]
    collection = collect({"a": queue}, None, now=10.001, policy=POLICY)
    assert collection.category == "a"
    assert collection.batch == tuple(queue[:3])


def test_round_robin_among_due_categories():
    waiting = {name: [item(name, 0.0)] for name in ("b", "a", "c")}
    assert collect(waiting, None, 0.5, POLICY).category == "a"
    assert collect(waiting, "a", 0.5, POLICY).category == "b"
    assert collect(waiting, "b", 0.5, POLICY).category == "c"
    assert collect(waiting, "c", 0.5, POLICY).category == "a"  # wraps around
    assert next_in_turn(["a", "c"], "b") == "c"  # last served need not be waiting any more


def test_a_busy_category_cannot_starve_a_quiet_one():
    busy = [item("busy", 0.0) for _ in range(30)]
    quiet = [item("quiet", 0.3)]  # arrived later than all the busy images
    served, last = [], None
    waiting = {"busy": busy, "quiet": quiet}
    for _ in range(3):
        collection = collect(waiting, last, now=0.5, policy=POLICY)
        served.append(collection.category)
        last = collection.category
        waiting = {c: [i for i in q if i not in collection.batch] for c, q in waiting.items()}
    assert served == ["busy", "quiet", "busy"]


def test_a_category_not_yet_due_does_not_block_a_due_one():
    waiting = {"a": [item("a", 0.499)], "b": [item("b", 0.0)]}
    collection = collect(waiting, "b", now=0.5, policy=POLICY)
    assert collection.category == "b"  # a is next in turn, but not due


def test_expired_and_cancelled_images_are_dropped_not_batched():
    old, gone, young = item("a", 0.0), item("a", 1.5), item("a", 1.995)
    gone.future.cancel()
    collection = collect({"a": [old, gone, young]}, None, now=2.0, policy=POLICY)
    assert collection.expired == (old,)  # waited 2 s > timeout_s = 1 s
    assert collection.cancelled == (gone,)
    assert collection.batch == ()  # young waited 5 ms < max_wait_s = 10 ms: only it is left
    assert collection.wait_s == pytest.approx(0.005)
    assert collection.taken == (old, gone)


def test_collect_changes_nothing():
    queue = [item("a", 0.0), item("a", 0.1)]
    waiting = {"a": list(queue)}
    collect(waiting, None, now=5.0, policy=POLICY)
    assert waiting == {"a": queue}


def test_policy_validation_names_the_argument():
    with pytest.raises(ValueError, match="max_wait_s must be >= 0 and less than timeout_s"):
        BatchPolicy(max_batch_size=1, max_wait_s=2.0, timeout_s=1.0)
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchPolicy(max_batch_size=0, max_wait_s=0.0, timeout_s=1.0)


# --- the worker thread -------------------------------------------------------------------------


@pytest.fixture
def make_batcher(weights_dir):
    batchers = []

    def make(policy=POLICY, max_queue=64):
        registry = ModelRegistry(weights_dir)
        batcher = Batcher(registry, torch.device("cpu"), policy, max_queue)
        batcher.start()
        deadline = time.monotonic() + 5
        while not registry.finished_loading and time.monotonic() < deadline:
            time.sleep(0.002)
        batchers.append(batcher)
        return batcher

    yield make
    for batcher in batchers:
        batcher.stop()


def spy(batcher: Batcher, category: str, **options) -> SpyDetector:
    checkpoint = batcher.registry.get(category).checkpoint
    checkpoint.detector = SpyDetector(checkpoint.detector, **options)
    return checkpoint.detector


def test_images_submitted_together_share_one_forward_pass(make_batcher):
    batcher = make_batcher(BatchPolicy(max_batch_size=8, max_wait_s=0.2, timeout_s=5.0))
    detector = spy(batcher, RGB_CATEGORY)
    with batcher.incoming():  # the second request is on its way while the first is queued
        futures = batcher.submit(RGB_CATEGORY, [random_image(seed=s) for s in range(3)])
        futures += batcher.submit(RGB_CATEGORY, [random_image(seed=3)], pixel_threshold=0.0)
    results = [future.result(timeout=5) for future in futures]
    assert detector.batch_sizes == [4]
    assert all(isinstance(result, ImageInference) for result in results)
    assert results[3].pixel_threshold == 0.0 and results[0].pixel_threshold != 0.0
    stats = batcher.stats.category(RGB_CATEGORY)
    assert (stats.batches, stats.images) == (1, 4)
    assert batcher.stats.batches_run == 1 and batcher.stats.images_run == 4


def test_images_pinned_to_a_swapped_out_model_are_scored_by_it(make_batcher):
    batcher = make_batcher(BatchPolicy(max_batch_size=8, max_wait_s=0.2, timeout_s=5.0))
    old = spy(batcher, RGB_CATEGORY)
    admitted_with = batcher.registry.get(RGB_CATEGORY).checkpoint
    swapped_in = copy.copy(admitted_with)  # what a reload puts in the registry
    swapped_in.detector = new = SpyDetector(old.inner)
    batcher.registry.get(RGB_CATEGORY).checkpoint = swapped_in
    with batcher.incoming():  # both requests are queued before the batch runs
        pinned = batcher.submit(
            RGB_CATEGORY, [random_image(), random_image(seed=1)], checkpoint=admitted_with
        )
        current = batcher.submit(RGB_CATEGORY, [random_image(seed=2)])
    assert all(isinstance(f.result(timeout=5), ImageInference) for f in pinned + current)
    assert old.batch_sizes == [2] and new.batch_sizes == [1]  # one pass per model
    assert batcher.stats.category(RGB_CATEGORY).images == 3


def test_a_full_queue_refuses_the_whole_request(make_batcher):
    gate = threading.Event()
    batcher = make_batcher(max_queue=3)
    spy(batcher, RGB_CATEGORY, gate=gate)
    running = batcher.submit(RGB_CATEGORY, [random_image()])
    batcher.registry.get(RGB_CATEGORY).checkpoint.detector.entered.wait(5)  # worker busy, queue empty
    waiting = batcher.submit(GREY_CATEGORY, [random_image(channels=1)] * 2)
    with pytest.raises(QueueFull) as caught:
        batcher.submit(RGB_CATEGORY, [random_image()] * 2)
    assert caught.value.status_code == 503 and caught.value.headers == {"Retry-After": "1"}
    assert batcher.waiting == 2  # nothing of the refused request was queued
    assert batcher.stats.category(RGB_CATEGORY).rejected == 2
    gate.set()
    assert all(f.result(timeout=5) for f in running + waiting)


def test_a_cancelled_image_is_never_computed(make_batcher):
    gate = threading.Event()
    batcher = make_batcher(BatchPolicy(max_batch_size=8, max_wait_s=0.0, timeout_s=5.0))
    detector = spy(batcher, RGB_CATEGORY, gate=gate)
    first = batcher.submit(RGB_CATEGORY, [random_image()])
    detector.entered.wait(5)
    kept, dropped = batcher.submit(RGB_CATEGORY, [random_image(seed=1), random_image(seed=2)])
    assert dropped.cancel()
    gate.set()
    assert first[0].result(timeout=5) and kept.result(timeout=5)
    assert detector.batch_sizes == [1, 1]
    assert batcher.stats.category(RGB_CATEGORY).cancelled == 1


def test_an_image_that_waited_too_long_fails_with_a_timeout(make_batcher):
    gate = threading.Event()
    batcher = make_batcher(BatchPolicy(max_batch_size=8, max_wait_s=0.0, timeout_s=0.05))
    detector = spy(batcher, RGB_CATEGORY, gate=gate)
    batcher.submit(RGB_CATEGORY, [random_image()])
    detector.entered.wait(5)
    (late,) = batcher.submit(RGB_CATEGORY, [random_image(seed=1)])
    time.sleep(0.1)
    gate.set()
    with pytest.raises(InferenceTimeout):
        late.result(timeout=5)
    assert detector.batch_sizes == [1]
    assert batcher.stats.category(RGB_CATEGORY).expired == 1


def test_a_failing_batch_fails_its_images_and_the_worker_goes_on(make_batcher):
    batcher = make_batcher()
    spy(batcher, RGB_CATEGORY, error=RuntimeError("CUDA out of memory"))
    (failed,) = batcher.submit(RGB_CATEGORY, [random_image()])
    with pytest.raises(InferenceFailed, match="RuntimeError"):
        failed.result(timeout=5)
    (fine,) = batcher.submit(GREY_CATEGORY, [random_image(channels=1)])
    assert fine.result(timeout=5).score >= 0
    stats = batcher.stats.category(RGB_CATEGORY)
    assert (stats.failed, stats.batches, stats.images) == (1, 0, 0)


def test_an_image_too_large_for_the_device_alone_counts_as_failed_not_computed(make_batcher):
    batcher = make_batcher(BatchPolicy(max_batch_size=8, max_wait_s=0.2, timeout_s=5.0))
    checkpoint = batcher.registry.get(RGB_CATEGORY).checkpoint
    checkpoint.detector = RunsOutOfMemory(checkpoint.detector, fits=0)
    (failed,) = batcher.submit(RGB_CATEGORY, [random_image()])
    with pytest.raises(InferenceFailed, match="does not fit in device memory even alone"):
        failed.result(timeout=5)
    stats = batcher.stats.category(RGB_CATEGORY)
    assert (stats.failed, stats.batches, stats.images) == (1, 0, 0)


def test_stop_fails_waiting_images_and_refuses_new_ones(make_batcher):
    gate = threading.Event()
    batcher = make_batcher(BatchPolicy(max_batch_size=8, max_wait_s=0.0, timeout_s=5.0))
    detector = spy(batcher, RGB_CATEGORY, gate=gate)
    (running,) = batcher.submit(RGB_CATEGORY, [random_image()])
    detector.entered.wait(5)
    (waiting,) = batcher.submit(RGB_CATEGORY, [random_image(seed=1)])
    stopper = threading.Thread(target=batcher.stop)
    stopper.start()
    with pytest.raises(ServiceStopping):
        waiting.result(timeout=5)
    gate.set()
    stopper.join(5)
    assert running.result(timeout=1).score >= 0  # the batch in flight finishes
    with pytest.raises(ServiceStopping):
        batcher.submit(RGB_CATEGORY, [random_image()])


# --- waiting for results on the event loop -----------------------------------------------------


@pytest.mark.anyio
async def test_gather_results_keeps_order():
    futures = [Future(), Future()]
    for future in futures:
        future.set_running_or_notify_cancel()
    task = asyncio.ensure_future(gather_results(futures, timeout_s=1))
    futures[1].set_result("second")
    futures[0].set_result("first")
    assert await task == ["first", "second"]


@pytest.mark.anyio
async def test_gather_results_times_out_and_cancels_what_still_waits():
    futures = [Future()]
    with pytest.raises(InferenceTimeout):
        await gather_results(futures, timeout_s=0.01)
    assert futures[0].cancelled()


@pytest.mark.anyio
async def test_gather_results_gives_up_when_the_client_disconnects():
    futures = [Future(), Future()]
    with pytest.raises(ClientDisconnected):
        await gather_results(futures, timeout_s=5, disconnected=asyncio.sleep(0.01))
    assert all(future.cancelled() for future in futures)


@pytest.mark.anyio
async def test_the_first_error_cancels_the_other_images():
    failing, waiting = Future(), Future()
    failing.set_running_or_notify_cancel()
    failing.set_exception(InferenceTimeout("late"))
    with pytest.raises(InferenceTimeout):
        await gather_results([failing, waiting], timeout_s=5)
    assert waiting.cancelled()
