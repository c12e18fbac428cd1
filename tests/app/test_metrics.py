"""ServiceMetrics: bounded labels, batch observations, and the state read at scrape time."""

from types import SimpleNamespace

import torch
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import BATCH_SIZE_BUCKETS, ServiceMetrics
from app.registry import ModelRegistry
from app.stats import BatchRecord, BatchStats
from tests.app.conftest import GREY_CATEGORY, RGB_CATEGORY


def samples(metrics: ServiceMetrics) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) → value, from the exposition text as Prometheus would read it."""
    text = metrics.exposition()[0].decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_every_service_metric_is_prefixed_and_documented():
    families = text_string_to_metric_families(ServiceMetrics().exposition()[0].decode())
    ours = {family.name: family for family in families if not family.name.startswith("process_")}
    assert ours, "no metric exposed"
    for name, family in ours.items():
        assert name.startswith("inspect_"), name
        assert family.documentation, name


def test_unknown_categories_share_one_label(weights_dir):
    metrics = ServiceMetrics()
    assert metrics.category_label(RGB_CATEGORY) == "unknown"  # no registry watched yet
    metrics.watch(ModelRegistry(weights_dir), None)
    assert metrics.category_label(RGB_CATEGORY) == RGB_CATEGORY
    assert metrics.category_label("../../etc/passwd") == "unknown"
    assert metrics.category_label(None) == "unknown"


def test_a_batch_moves_the_size_wait_and_compute_histograms():
    metrics = ServiceMetrics()
    metrics.observe_batch(BatchRecord(RGB_CATEGORY, queue_wait_s=(0.004, 0.002, 0.0), compute_s=0.03))
    assert value(metrics, "inspect_batch_size_count", category=RGB_CATEGORY) == 1
    assert value(metrics, "inspect_batch_size_sum", category=RGB_CATEGORY) == 3
    assert value(metrics, "inspect_batch_size_bucket", category=RGB_CATEGORY, le="2.0") == 0
    assert value(metrics, "inspect_batch_size_bucket", category=RGB_CATEGORY, le="4.0") == 1
    assert value(metrics, "inspect_queue_wait_seconds_count", category=RGB_CATEGORY) == 3
    assert abs(value(metrics, "inspect_queue_wait_seconds_sum", category=RGB_CATEGORY) - 0.006) < 1e-12
    assert value(metrics, "inspect_batch_compute_seconds_sum", category=RGB_CATEGORY) == 0.03
    assert BATCH_SIZE_BUCKETS[:7] == (1, 2, 4, 8, 16, 32, 64) and BATCH_SIZE_BUCKETS[-1] >= 1024


def test_requests_images_and_rejections_count_by_label():
    metrics = ServiceMetrics()
    metrics.observe_request(RGB_CATEGORY, 200, 0.02)
    metrics.observe_request(RGB_CATEGORY, 200, 0.04)
    metrics.observe_images(RGB_CATEGORY, [True, False, False])
    metrics.observe_rejection("queue_full")
    assert value(metrics, "inspect_requests_total", category=RGB_CATEGORY, status="200") == 2
    assert value(metrics, "inspect_request_duration_seconds_count", category=RGB_CATEGORY) == 2
    assert value(metrics, "inspect_images_total", category=RGB_CATEGORY, verdict="anomalous") == 1
    assert value(metrics, "inspect_images_total", category=RGB_CATEGORY, verdict="normal") == 2
    assert value(metrics, "inspect_rejections_total", reason="queue_full") == 1


def test_model_states_and_queue_depth_are_read_at_scrape_time(weights_dir):
    metrics = ServiceMetrics()
    assert value(metrics, "inspect_queue_depth") == 0
    registry = ModelRegistry(weights_dir)
    metrics.watch(registry, None)
    assert value(metrics, "inspect_model_state", category=RGB_CATEGORY, state="loading") == 1
    registry.load_all(torch.device("cpu"), lambda checkpoint: None)
    for category in (RGB_CATEGORY, GREY_CATEGORY):
        assert value(metrics, "inspect_model_state", category=category, state="ready") == 1
        assert value(metrics, "inspect_model_state", category=category, state="loading") == 0
        assert value(metrics, "inspect_model_state", category=category, state="failed") == 0


def test_batcher_image_outcomes_are_read_from_its_stats_at_scrape_time():
    metrics = ServiceMetrics()
    stats = BatchStats()
    metrics.watch(None, SimpleNamespace(waiting=3, stats=stats))  # the two attributes a scrape reads
    assert value(metrics, "inspect_batcher_images_total", category=RGB_CATEGORY, outcome="failed") is None
    stats.batch_done(RGB_CATEGORY, queue_wait_s=(0.0, 0.0), compute_s=0.01)
    stats.add(RGB_CATEGORY, failed=1, expired=2)
    stats.add(GREY_CATEGORY, rejected=4)
    assert value(metrics, "inspect_queue_depth") == 3
    expected = {
        (RGB_CATEGORY, "computed"): 2,
        (RGB_CATEGORY, "failed"): 1,
        (RGB_CATEGORY, "cancelled"): 0,
        (RGB_CATEGORY, "expired"): 2,
        (GREY_CATEGORY, "rejected"): 4,
        (GREY_CATEGORY, "computed"): 0,
    }
    for (category, outcome), count in expected.items():
        assert value(metrics, "inspect_batcher_images_total", category=category, outcome=outcome) == count


def test_two_services_do_not_share_metrics():
    first, second = ServiceMetrics(), ServiceMetrics()
    first.observe_rejection("timeout")
    assert value(first, "inspect_rejections_total", reason="timeout") == 1
    assert value(second, "inspect_rejections_total", reason="timeout") is None


def test_openmetrics_when_the_scraper_asks():
    body, content_type = ServiceMetrics().exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
