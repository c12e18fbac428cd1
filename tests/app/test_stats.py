"""Batch counters: per category, with totals, safe to read while the worker writes."""

from app.stats import BatchRecord, BatchStats, CategoryStats


def test_counts_add_up_per_category_and_in_total():
    stats = BatchStats()
    stats.add("a", batches=1, images=4)
    stats.add("a", batches=1, images=2, cancelled=1)
    stats.add("b", batches=1, images=1, rejected=3)
    assert stats.category("a") == CategoryStats(batches=2, images=6, cancelled=1)
    assert stats.category("never") == CategoryStats()
    assert (stats.batches_run, stats.images_run) == (3, 7)
    snapshot = {"batches": 1, "images": 1, "failed": 0, "cancelled": 0, "expired": 0, "rejected": 3}
    assert stats.snapshot()["b"] == snapshot


def test_a_read_is_a_copy():
    stats = BatchStats()
    stats.add("a", images=1)
    stats.category("a").images = 100
    assert stats.category("a").images == 1


def test_a_computed_batch_is_counted_and_told_to_every_listener():
    stats, heard = BatchStats(), []
    stats.listen(heard.append)
    stats.listen(lambda record: heard.append(record.size))
    stats.batch_done("a", [0.003, 0.001], 0.02)
    assert stats.category("a") == CategoryStats(batches=1, images=2)
    assert heard == [BatchRecord("a", (0.003, 0.001), 0.02), 2]


def test_a_failing_listener_is_logged_and_does_not_stop_the_others(caplog):
    stats, heard = BatchStats(), []

    def broken(record):
        raise RuntimeError("metrics backend gone")

    stats.listen(broken)
    stats.listen(heard.append)
    stats.batch_done("a", [0.0], 0.01)
    assert len(heard) == 1 and stats.batches_run == 1
    assert "metrics backend gone" in caplog.text
