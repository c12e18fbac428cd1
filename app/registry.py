"""The models the service serves: one checkpoint per category, found in the weights folder.

Every ``*.safetensors`` file in ``INSPECT_WEIGHTS_DIR`` is one category, named by the file's stem:
that is the name operators see on disk and the name in the URL (``/inspect/<stem>``). When the
category recorded inside the checkpoint differs from the stem, a warning says so and the stem still
wins. The name in a URL is only ever looked up in this registry's dictionary, never used to build a
path.

Discovery lists the files (state ``loading``); the inference worker then loads each one onto the
device and runs a warm-up pass (state ``ready``). A checkpoint that cannot be loaded is logged and
kept with state ``failed`` and its error, and the others serve normally.

``reload`` re-scans the folder while the service runs (``POST /admin/reload``): new and changed
files are loaded and warmed up into fresh entries beside the serving ones, then one assignment
swaps the whole dictionary. A reader holds either the old dictionary or the new one, never a mix,
and the batcher binds a batch's checkpoint once before its forward pass, so the swap falls between
batches. A file that fails to load leaves the model it would have replaced serving.
"""

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from app.errors import Conflict, UnknownCategory
from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".safetensors"
HASH_CHARS = 8


class LoadState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ModelEntry:
    """One category's checkpoint and how its loading went.

    Args:
        category: the file stem, as in the URL.
        path: the checkpoint file.
        state: loading, ready or failed.
        checkpoint: the loaded checkpoint once ready.
        error: why loading failed.
        version: ``<created_at>-<first 8 hex of the file's SHA-256>``, set once the file is read.
        digest: the SHA-256 of the file that was read, hex.
    """

    category: str
    path: Path
    state: LoadState = LoadState.LOADING
    checkpoint: Checkpoint | None = None
    error: str | None = None
    version: str | None = None
    digest: str | None = None


@dataclass
class ReloadReport:
    """What a reload did, per category (file stem).

    Args:
        loaded: new or changed checkpoints now serving (or failed ones that now load).
        unchanged: checkpoints whose file is the one already serving.
        failed: checkpoints that could not be loaded, with the error; a model they would have
            replaced still serves.
        removed: categories whose file has gone; they no longer serve.
    """

    loaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest_or_none(path: Path) -> str | None:
    try:
        return file_digest(path)
    except OSError:  # gone or unreadable since the scan: loading it will say why
        return None


def version_of(metadata: dict[str, Any], digest: str) -> str:
    created = str(metadata.get("created_at") or "undated")
    return f"{created}-{digest[:HASH_CHARS]}"


class ModelRegistry:
    """Category name → ``ModelEntry``, for every checkpoint in a weights folder.

    Args:
        weights_dir: the folder to scan (not recursive).
    Raises:
        NotADirectoryError: the folder does not exist.
    """

    def __init__(self, weights_dir: Path) -> None:
        weights_dir = Path(weights_dir)
        if not weights_dir.is_dir():
            raise NotADirectoryError(f"INSPECT_WEIGHTS_DIR={weights_dir}: no such folder")
        self.weights_dir = weights_dir
        files = self._scan()
        self.entries: dict[str, ModelEntry] = {p.stem: ModelEntry(p.stem, p) for p in files}
        self._reload_lock = threading.Lock()
        if not files:
            logger.error("no %s checkpoints in %s: nothing to serve", CHECKPOINT_SUFFIX, weights_dir)

    def _scan(self) -> list[Path]:
        return sorted(p for p in self.weights_dir.glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file())

    def get(self, category: str) -> ModelEntry | None:
        return self.entries.get(category)

    def lookup(self, category: str) -> ModelEntry:
        """The category's entry, or UnknownCategory (404) listing the categories that exist."""
        entry = self.entries.get(category)
        if entry is None:
            raise UnknownCategory(f"unknown category {category!r}", available=self.categories)
        return entry

    @property
    def categories(self) -> list[str]:
        return list(self.entries)

    def load_all(
        self,
        device: torch.device,
        warm_up: Callable[[Checkpoint], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Load every checkpoint onto ``device`` and warm it up; failures are recorded, not raised."""
        for entry in self.entries.values():
            if should_stop():
                return
            self._load(entry, device, warm_up)

    def reload(self, device: torch.device, warm_up: Callable[[Checkpoint], None]) -> ReloadReport:
        """Re-scan the folder, load new and changed checkpoints, then swap them in at once.

        Runs on a loader thread while the worker goes on serving the current models.

        Raises:
            Conflict: a reload is already running, the first load has not finished, or the folder
                has gone (nothing changes then).
        """
        if not self._reload_lock.acquire(blocking=False):
            raise Conflict("a reload is already running; retry when it has finished")
        try:
            if not self.finished_loading:
                raise Conflict("the checkpoints are still loading; retry once /readyz answers 200")
            if not self.weights_dir.is_dir():
                raise Conflict(f"INSPECT_WEIGHTS_DIR {self.weights_dir.name!r} has gone; nothing was changed")
            return self._reload(device, warm_up)
        finally:
            self._reload_lock.release()

    def _reload(self, device: torch.device, warm_up: Callable[[Checkpoint], None]) -> ReloadReport:
        current, report = self.entries, ReloadReport()
        entries: dict[str, ModelEntry] = {}
        files = self._scan()
        for path in files:
            old = current.get(path.stem)
            if old is not None and old.state == LoadState.READY and old.digest == _digest_or_none(path):
                entries[path.stem] = old
                report.unchanged.append(path.stem)
                continue
            fresh = ModelEntry(path.stem, path)
            self._load(fresh, device, warm_up)
            if fresh.state == LoadState.READY:
                entries[path.stem] = fresh
                report.loaded.append(path.stem)
            else:
                report.failed[path.stem] = fresh.error or ""
                keep_old = old is not None and old.state == LoadState.READY
                entries[path.stem] = old if old is not None and keep_old else fresh
        report.removed = sorted(set(current) - {path.stem for path in files})
        self.entries = entries  # the swap: one reference assignment
        logger.info(
            "reload: %d loaded, %d unchanged, %d failed, %d removed",
            len(report.loaded),
            len(report.unchanged),
            len(report.failed),
            len(report.removed),
        )
        return report

    def _load(self, entry: ModelEntry, device: torch.device, warm_up: Callable[[Checkpoint], None]) -> None:
        try:
            checkpoint = load_checkpoint(entry.path, device)
            entry.digest = file_digest(entry.path)
            entry.version = version_of(checkpoint.metadata, entry.digest)
            if checkpoint.category != entry.category:
                logger.warning(
                    "%s holds category %r; it is served as %r, its file name",
                    entry.path,
                    checkpoint.category,
                    entry.category,
                )
            warm_up(checkpoint)
        except CheckpointError as err:
            self._fail(entry, f"{entry.path.name}: {err.reason}")  # the file name: clients see this
        except Exception as err:  # a broken file must not take the other categories down
            logger.exception("loading %s failed", entry.path)
            self._fail(entry, f"{entry.path.name}: {type(err).__name__}: {err}")
        else:
            entry.checkpoint = checkpoint  # set before the state, which readers check first
            entry.state = LoadState.READY
            logger.info("category %r ready (%s, version %s)", entry.category, device, entry.version)

    @staticmethod
    def _fail(entry: ModelEntry, error: str) -> None:
        entry.error = error
        entry.state = LoadState.FAILED
        logger.error("category %r (%s) failed to load: %s", entry.category, entry.path, error)

    @property
    def finished_loading(self) -> bool:
        return all(entry.state != LoadState.LOADING for entry in self.entries.values())

    @property
    def ready(self) -> bool:
        """Every checkpoint has finished loading and at least one serves."""
        states = [entry.state for entry in self.entries.values()]
        return self.finished_loading and LoadState.READY in states
