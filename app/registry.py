"""The models the service serves: one checkpoint per category, found in the weights folder.

Every ``*.safetensors`` file in ``INSPECT_WEIGHTS_DIR`` is one category, named by the file's stem:
that is the name operators see on disk and the name in the URL (``/inspect/<stem>``). When the
category recorded inside the checkpoint differs from the stem, a warning says so and the stem still
wins. The name in a URL is only ever looked up in this registry's dictionary, never used to build a
path.

Discovery lists the files (state ``loading``); the inference worker then loads each one onto the
device and runs a warm-up pass (state ``ready``). A checkpoint that cannot be loaded is logged and
kept with state ``failed`` and its error, and the others serve normally.
"""

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from app.errors import UnknownCategory
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
    """

    category: str
    path: Path
    state: LoadState = LoadState.LOADING
    checkpoint: Checkpoint | None = None
    error: str | None = None
    version: str | None = None


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        files = sorted(p for p in weights_dir.glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file())
        self.entries: dict[str, ModelEntry] = {p.stem: ModelEntry(p.stem, p) for p in files}
        if not files:
            logger.error("no %s checkpoints in %s: nothing to serve", CHECKPOINT_SUFFIX, weights_dir)

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

    def _load(self, entry: ModelEntry, device: torch.device, warm_up: Callable[[Checkpoint], None]) -> None:
        try:
            checkpoint = load_checkpoint(entry.path, device)
            entry.version = version_of(checkpoint.metadata, file_digest(entry.path))
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
