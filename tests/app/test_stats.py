"""Batch counters: per category, with totals, safe to read while the worker writes."""

from app.stats import BatchStats, CategoryStats


def test_counts_add_up_per_category_and_in_total():
    stats = BatchStats()
    stats.add("a", batches=1, images=4)
    stats.add("a", batches=1, images=2, cancelled=1)
    stats.add("b", batches=1, images=1, rejected=3)
    assert stats.category("a") == CategoryStats(batches=2, images=6, cancelled=1)
    assert stats.category("never") == CategoryStats()
    assert (stats.batches_run, stats.images_run) == (3, 7)
    assert stats.snapshot()["b"] == {"batches": 1, "images": 1, "cancelled": 0, "expired": 0, "rejected": 3}


def test_a_read_is_a_copy():
    stats = BatchStats()
    stats.add("a", images=1)
    stats.category("a").images = 100
    assert stats.category("a").images == 1
