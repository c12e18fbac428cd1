"""Model registry: discovery by file stem, loading with warm-up, failures kept beside good models."""

import logging
import re

import pytest
import torch

from app.errors import Conflict, UnknownCategory
from app.registry import LoadState, ModelRegistry
from tests.app.conftest import GREY_CATEGORY, RGB_CATEGORY
from tests.conftest import write_tiny_checkpoint

CPU = torch.device("cpu")


def test_discovery_lists_checkpoints_by_stem_as_loading(weights_dir):
    (weights_dir / "notes.txt").write_text("not a checkpoint")
    registry = ModelRegistry(weights_dir)
    assert registry.categories == [GREY_CATEGORY, RGB_CATEGORY]  # sorted, *.safetensors only
    assert all(entry.state == LoadState.LOADING for entry in registry.entries.values())
    assert not registry.finished_loading
    assert not registry.ready


def test_load_all_loads_and_warms_up_every_model(weights_dir):
    registry = ModelRegistry(weights_dir)
    warmed = []
    registry.load_all(CPU, warmed.append)
    assert registry.ready
    assert [c.category for c in warmed] == [GREY_CATEGORY, RGB_CATEGORY]
    entry = registry.get(RGB_CATEGORY)
    assert entry.state == LoadState.READY
    assert not entry.checkpoint.detector.training
    assert re.fullmatch(r".+-[0-9a-f]{8}", entry.version)
    assert entry.version.startswith(entry.checkpoint.metadata["created_at"])


def test_a_broken_checkpoint_fails_alone(weights_dir, caplog):
    (weights_dir / "broken.safetensors").write_bytes(b"not safetensors at all")
    registry = ModelRegistry(weights_dir)
    with caplog.at_level(logging.ERROR, logger="app.registry"):
        registry.load_all(CPU, lambda checkpoint: None)
    broken = registry.get("broken")
    assert broken.state == LoadState.FAILED
    assert broken.error.startswith("broken.safetensors: ")  # the file name, not the server's path
    assert str(weights_dir) not in broken.error
    assert "broken" in caplog.text
    assert registry.get(RGB_CATEGORY).state == LoadState.READY
    assert registry.ready  # everything finished, and some serve


def test_a_failing_warm_up_fails_that_category(weights_dir):
    def warm_up(checkpoint):
        if checkpoint.category == GREY_CATEGORY:
            raise RuntimeError("out of memory")

    registry = ModelRegistry(weights_dir)
    registry.load_all(CPU, warm_up)
    assert registry.get(GREY_CATEGORY).state == LoadState.FAILED
    assert "RuntimeError: out of memory" in registry.get(GREY_CATEGORY).error
    assert registry.get(RGB_CATEGORY).state == LoadState.READY


def test_the_file_stem_names_the_category(tmp_path, caplog):
    write_tiny_checkpoint(tmp_path / "bottle-v2.safetensors", category="bottle")
    registry = ModelRegistry(tmp_path)
    with caplog.at_level(logging.WARNING, logger="app.registry"):
        registry.load_all(CPU, lambda checkpoint: None)
    assert registry.categories == ["bottle-v2"]
    assert registry.get("bottle-v2").state == LoadState.READY
    assert "holds category 'bottle'" in caplog.text


def test_lookup_of_an_unknown_category_lists_the_available_ones(weights_dir):
    registry = ModelRegistry(weights_dir)
    with pytest.raises(UnknownCategory) as caught:
        registry.lookup("../widget")
    assert caught.value.status_code == 404
    assert caught.value.extra["available"] == [GREY_CATEGORY, RGB_CATEGORY]


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(NotADirectoryError, match="INSPECT_WEIGHTS_DIR"):
        ModelRegistry(tmp_path / "absent")
    empty = ModelRegistry(tmp_path)
    empty.load_all(CPU, lambda checkpoint: None)
    assert empty.finished_loading and not empty.ready


def test_load_all_stops_when_asked(weights_dir):
    registry = ModelRegistry(weights_dir)
    registry.load_all(CPU, lambda checkpoint: None, should_stop=lambda: True)
    assert all(entry.state == LoadState.LOADING for entry in registry.entries.values())


# --- reload: load beside the serving models, then swap the dictionary ----------------------------


def loaded_registry(weights_dir) -> ModelRegistry:
    registry = ModelRegistry(weights_dir)
    registry.load_all(CPU, lambda checkpoint: None)
    return registry


def test_reload_keeps_unchanged_entries_as_they_are(weights_dir):
    registry = loaded_registry(weights_dir)
    before = dict(registry.entries)
    report = registry.reload(CPU, lambda checkpoint: pytest.fail("nothing to load"))
    assert (report.loaded, report.unchanged, report.failed, report.removed) == (
        [],
        [GREY_CATEGORY, RGB_CATEGORY],
        {},
        [],
    )
    assert all(registry.entries[name] is entry for name, entry in before.items())


def test_reload_loads_new_and_changed_files_and_drops_removed_ones(weights_dir):
    registry = loaded_registry(weights_dir)
    old_widget = registry.get(RGB_CATEGORY)
    write_tiny_checkpoint(weights_dir / f"{RGB_CATEGORY}.safetensors", RGB_CATEGORY, seed=7)  # changed
    write_tiny_checkpoint(weights_dir / "bottle.safetensors", "bottle", seed=3)  # new
    (weights_dir / f"{GREY_CATEGORY}.safetensors").unlink()  # removed
    warmed = []
    report = registry.reload(CPU, warmed.append)
    assert report.loaded == ["bottle", RGB_CATEGORY]
    assert report.removed == [GREY_CATEGORY] and report.unchanged == [] and report.failed == {}
    assert registry.categories == ["bottle", RGB_CATEGORY]
    new_widget = registry.get(RGB_CATEGORY)
    assert new_widget is not old_widget and new_widget.state == LoadState.READY
    assert new_widget.version != old_widget.version
    assert sorted(c.category for c in warmed) == ["bottle", RGB_CATEGORY]  # each warmed up before the swap
    assert old_widget.checkpoint is not None  # still whole for a batch that holds it


def test_a_broken_replacement_leaves_the_old_model_serving(weights_dir):
    registry = loaded_registry(weights_dir)
    serving = registry.get(RGB_CATEGORY)
    (weights_dir / f"{RGB_CATEGORY}.safetensors").write_bytes(b"half a file")
    (weights_dir / "cracked.safetensors").write_bytes(b"junk")
    report = registry.reload(CPU, lambda checkpoint: None)
    assert set(report.failed) == {RGB_CATEGORY, "cracked"}
    assert report.failed[RGB_CATEGORY].startswith(f"{RGB_CATEGORY}.safetensors: ")
    assert str(weights_dir) not in report.failed[RGB_CATEGORY]
    assert registry.get(RGB_CATEGORY) is serving and serving.state == LoadState.READY
    assert registry.get("cracked").state == LoadState.FAILED  # new and broken: listed, as at start
    assert report.loaded == [] and report.unchanged == [GREY_CATEGORY]


def test_a_failed_checkpoint_is_retried_and_can_recover(weights_dir):
    path = weights_dir / f"{RGB_CATEGORY}.safetensors"
    good = path.read_bytes()
    path.write_bytes(b"junk")
    registry = loaded_registry(weights_dir)
    assert registry.get(RGB_CATEGORY).state == LoadState.FAILED
    path.write_bytes(good)
    report = registry.reload(CPU, lambda checkpoint: None)
    assert report.loaded == [RGB_CATEGORY]
    assert registry.get(RGB_CATEGORY).state == LoadState.READY


def test_reload_refuses_while_loading_while_reloading_or_without_its_folder(weights_dir):
    registry = ModelRegistry(weights_dir)
    with pytest.raises(Conflict, match="still loading"):
        registry.reload(CPU, lambda checkpoint: None)
    registry.load_all(CPU, lambda checkpoint: None)
    registry._reload_lock.acquire()
    try:
        with pytest.raises(Conflict, match="already running"):
            registry.reload(CPU, lambda checkpoint: None)
    finally:
        registry._reload_lock.release()
    for path in weights_dir.iterdir():
        path.unlink()
    weights_dir.rmdir()
    with pytest.raises(Conflict, match="nothing was changed"):
        registry.reload(CPU, lambda checkpoint: None)
    assert registry.categories == [GREY_CATEGORY, RGB_CATEGORY]
