"""MVTec AD folder layout: index a category, load its images and masks, split train/validation.

Layout (Bergmann et al., CVPR 2019): ``<root>/<category>/train/good/*``, ``test/<type>/*`` and
``ground_truth/<type>/<stem>_mask.png`` for every defect type. Images may be PNG, JPEG, BMP or
TIFF, grayscale, RGB or RGBA, 8 or 16 bit, any size; they are resized to the model size by the
same function the service uses (``models.preprocess``).
"""

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image

from models.checkpoint import Checkpoint
from models.imageio import to_array
from models.preprocess import Box, to_model_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"


class DataError(ValueError):
    """A dataset that does not follow the layout; the message names the path."""


@dataclass(frozen=True)
class Sample:
    path: Path
    defect: str  # "good" or the defect type (the test sub-folder)
    mask_path: Path | None  # None for good images

    @property
    def is_anomalous(self) -> bool:
        return self.defect != GOOD


@dataclass(frozen=True)
class CategoryIndex:
    root: Path
    category: str
    train: list[Path]  # normal images
    test: list[Sample]

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect for s in self.test if s.is_anomalous})


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def index_category(data_root: Path | str, category: str, need_test: bool = True) -> CategoryIndex:
    """Index ``<data_root>/<category>``; raises DataError naming whatever is missing."""
    root = Path(data_root) / category
    if not Path(data_root).is_dir():
        raise DataError(f"data root {data_root} is not a directory")
    if not root.is_dir():
        available = sorted(p.name for p in Path(data_root).iterdir() if p.is_dir())
        raise DataError(
            f"category folder {root} does not exist (available: {', '.join(available) or 'none'})"
        )
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise DataError(f"{train_dir} does not exist: normal training images go there")
    train = list_images(train_dir)
    if not train:
        raise DataError(f"{train_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    test: list[Sample] = []
    test_dir = root / "test"
    if test_dir.is_dir():
        for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            for path in list_images(type_dir):
                mask = None
                if type_dir.name != GOOD:
                    mask = root / "ground_truth" / type_dir.name / f"{path.stem}_mask.png"
                    if not mask.is_file():
                        raise DataError(f"defect image {path} has no mask: expected {mask}")
                test.append(Sample(path, type_dir.name, mask))
    if need_test and not test:
        raise DataError(f"{test_dir} holds no test images")
    return CategoryIndex(root, category, train, test)


def fingerprint(paths: Sequence[Path], root: Path) -> str:
    """Short hash of the file list (relative names and sizes): tells whether two runs saw the same data."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def split_train_val(paths: Sequence[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Seeded split of the normal training images; validation gets at least 2 images."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(paths) < 4:
        raise DataError(f"need at least 4 normal training images to hold some out, got {len(paths)}")
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    n_val = min(len(paths) - 2, max(2, round(val_fraction * len(paths))))
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def read_image(path: Path, color_mode: str) -> np.ndarray:
    """(H, W, C) uint8 in the given colour mode; DataError if the file is not a readable image."""
    try:
        with Image.open(path) as image:
            return to_array(image, color_mode)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def read_mask(path: Path) -> np.ndarray:
    """(H, W) bool ground-truth mask: any non-zero pixel is defective."""
    return read_image(path, "L")[:, :, 0] > 0


def detect_color_mode(paths: Sequence[Path], sample: int = 16) -> str:
    """ "L" when the images are grayscale (a third of the compute), else "RGB"."""
    for path in list(paths)[:sample]:
        with Image.open(path) as image:
            if image.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "1", "LA"):
                return "RGB"
    return "L"


# Aspect ratios (width / height) within this factor of each other count as one shape: a fixed camera
# gives exactly one, and a few pixels of crop jitter between images should not change the mode.
SHAPE_TOLERANCE = 1.1
TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height (``to_array`` applies them)


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image as ``read_image`` will return it, from its header alone."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(ExifTags.Base.Orientation) in TRANSPOSED:
                width, height = height, width
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    return height, width


def aspect_ratio(path: Path) -> float:
    """Width / height of an image as ``read_image`` will return it, from its header alone."""
    height, width = image_shape(path)
    return width / height


def choose_resize(paths: Sequence[Path]) -> tuple[str, str]:
    """``fit --resize auto``: the resize mode for these training images, and why, in words.

    Images of one shape are stretched: each is squashed by the same factor, so the model learns one
    geometry and uses every pixel of its square. Images of varying shapes are letterboxed: stretched,
    each would be squashed by a different factor, the same texture would reach the model at
    different scales, and a normal but elongated part would look unusual (on magnetic_tile, tiles
    of aspect 0.4–2.5, stretched normal tiles far from square scored higher than square ones:
    BENCHMARKS.md §2).
    """
    ratios = [aspect_ratio(p) for p in paths]
    low, high = min(ratios), max(ratios)
    span = f"aspect ratios (width / height) {low:.2f}–{high:.2f}" if high > low else f"aspect ratio {low:.2f}"
    if high / low <= SHAPE_TOLERANCE:
        return "stretch", f"the {len(ratios)} training images share one shape ({span})"
    return "letterbox", f"the {len(ratios)} training images vary in shape ({span})"


def load_as_checkpoint(paths: Sequence[Path], checkpoint: Checkpoint) -> torch.Tensor:
    """``load_batch`` with the checkpoint's size, colour mode, resize, exposure level and region of
    interest."""
    return load_batch(
        paths,
        checkpoint.input_size,
        checkpoint.color_mode,
        checkpoint.resize,
        checkpoint.exposure_mean,
        checkpoint.roi,
    )


def mean_intensity(paths: Sequence[Path], color_mode: str) -> float:
    """The images' mean intensity in [0, 1], each image weighing the same whatever its size: the
    level ``fit --normalize-exposure`` scales every image to."""
    return float(np.mean([read_image(p, color_mode).mean() / 255.0 for p in paths]))


def load_batch(
    paths: Sequence[Path],
    size: int,
    color_mode: str,
    resize: str = "stretch",
    exposure_mean: float | None = None,
    roi: Box | None = None,
    chunk: int = 64,
) -> torch.Tensor:
    """Read and resize images into a (N, C, size, size) float tensor in [0, 1] (kept in memory);
    ``resize``, ``exposure_mean`` and ``roi`` as ``models.preprocess.to_model_input`` takes them."""
    out = []
    for start in range(0, len(paths), chunk):
        arrays = [torch.from_numpy(read_image(p, color_mode)) for p in paths[start : start + chunk]]
        out.append(to_model_input(arrays, size, resize, exposure_mean, roi))
    return torch.cat(out)
