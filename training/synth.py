"""Writes a deterministic synthetic anomaly-detection category in the MVTec AD folder layout.

    <out_root>/<category>/train/good/000.png
    <out_root>/<category>/test/good/000.png
    <out_root>/<category>/test/<defect>/000.png
    <out_root>/<category>/ground_truth/<defect>/000_mask.png   (mode "L", 0 or 255)

The layout is that of MVTec AD (Bergmann et al., CVPR 2019), so the same loaders read the real
benchmark and this data. Normal images come from `training.textures`, defects from
`training.defects`. Every image has its own generator, seeded with (seed, category, split, index),
so the files are identical from run to run and machine to machine, and asking for more images adds
files without changing the ones already there.
"""

import argparse
import shlex
import shutil
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from training.defects import DEFECTS, MIN_IMAGE_SIZE, Painter
from training.textures import KINDS, make_texture

_TRAIN_SPLIT, _TEST_GOOD_SPLIT, _TEST_DEFECT_SPLIT = 0, 1, 2
_MAX_PAINT_TRIES = 5  # a painter that leaves no visible change is retried with fresh draws


def write_category(
    out_root: Path,
    category: str = "demo",
    *,
    seed: int = 0,
    image_size: int = 128,
    n_train: int = 200,
    n_test_good: int = 20,
    n_test_per_defect: int = 10,
    kind: str = "auto",
    overwrite: bool = False,
) -> Path:
    """Generate one category on disk.

    Args:
        out_root: folder that receives the category folder; created if missing.
        category: name of the category folder; with kind="auto" it also picks the texture.
        seed: dataset seed; the same arguments always give the same files.
        image_size: side of the square RGB images, at least 32.
        n_train: normal training images.
        n_test_good: normal test images.
        n_test_per_defect: test images, each with one defect, for every defect in DEFECTS.
        kind: texture kind, one of KINDS, or "auto" to derive it from the category name.
        overwrite: replace a category already at the destination (only the folders and README
            this function writes are removed) instead of refusing.

    Returns:
        The category folder, <out_root>/<category>.
    """
    _check_arguments(category, seed, image_size, n_train, n_test_good, n_test_per_defect, kind)
    resolved_kind = resolve_kind(kind, category)
    root = Path(out_root) / category
    _prepare(root, overwrite)
    category_id = zlib.crc32(category.encode())
    shape = (image_size, image_size)

    for index in range(n_train):
        rng = np.random.default_rng([seed, category_id, _TRAIN_SPLIT, index])
        _save(make_texture(resolved_kind, shape, rng), root / "train/good" / _name(index, n_train))
    for index in range(n_test_good):
        rng = np.random.default_rng([seed, category_id, _TEST_GOOD_SPLIT, index])
        image = make_texture(resolved_kind, shape, rng)
        _save(image, root / "test/good" / _name(index, n_test_good))
    for defect, painter in DEFECTS.items():
        defect_id = zlib.crc32(defect.encode())  # stable if defects are added or reordered
        for index in range(n_test_per_defect):
            rng = np.random.default_rng([seed, category_id, _TEST_DEFECT_SPLIT, defect_id, index])
            image = make_texture(resolved_kind, shape, rng)
            image, mask = _paint(painter, image, rng)
            name = _name(index, n_test_per_defect)
            _save(image, root / "test" / defect / name)
            _save_mask(mask, root / "ground_truth" / defect / name.replace(".png", "_mask.png"))

    command = (
        f"python -m training synth --out {shlex.quote(str(out_root))} "
        f"--category {shlex.quote(category)} --seed {seed} --image-size {image_size} "
        f"--n-train {n_train} --n-test-good {n_test_good} "
        f"--n-test-per-defect {n_test_per_defect} --kind {kind}"
    )
    (root / "README.md").write_text(
        _readme(category, command, resolved_kind, image_size, n_train, n_test_good, n_test_per_defect)
    )
    return root


def resolve_kind(kind: str, category: str) -> str:
    """The texture kind to use: `kind` itself, or for "auto" one picked from the category name."""
    if kind == "auto":
        return KINDS[zlib.crc32(category.encode()) % len(KINDS)]
    return kind


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to the 8-bit values written to PNG (round to nearest)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `synth` sub-command's options to `parser`."""
    parser.add_argument("--out", type=Path, required=True, help="folder to write the category in")
    parser.add_argument("--category", default="demo", help="category folder name (default: demo)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--image-size", type=int, default=128, help="image side in px, >= 32 (default: 128)")
    parser.add_argument("--n-train", type=int, default=200, help="normal training images")
    parser.add_argument("--n-test-good", type=int, default=20, help="normal test images")
    parser.add_argument("--n-test-per-defect", type=int, default=10, help="test images per defect type")
    parser.add_argument(
        "--kind",
        default="auto",
        choices=("auto", *KINDS),
        help="texture kind; auto picks one from the category name (default: auto)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing category of that name")


def run(args: argparse.Namespace) -> int:
    """Run the `synth` sub-command; returns the process exit code."""
    root = write_category(
        args.out,
        args.category,
        seed=args.seed,
        image_size=args.image_size,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_per_defect=args.n_test_per_defect,
        kind=args.kind,
        overwrite=args.overwrite,
    )
    n_test = args.n_test_good + args.n_test_per_defect * len(DEFECTS)
    print(
        f"wrote {root} ({resolve_kind(args.kind, args.category)}): {args.n_train} train, {n_test} test images"
    )
    return 0


def _check_arguments(
    category: str,
    seed: int,
    image_size: int,
    n_train: int,
    n_test_good: int,
    n_test_per_defect: int,
    kind: str,
) -> None:
    """Fail early, naming the argument and its command-line flag."""
    if not category or category in (".", "..") or "/" in category or "\\" in category:
        raise ValueError(f"category must be a plain folder name (--category), got {category!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (--seed), got {seed}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE} (--image-size), got {image_size}")
    counts = {
        "n_train (--n-train)": n_train,
        "n_test_good (--n-test-good)": n_test_good,
        "n_test_per_defect (--n-test-per-defect)": n_test_per_defect,
    }
    for name, count in counts.items():
        if count < 1:
            raise ValueError(f"{name} must be a positive count, got {count}")
    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"kind must be auto or one of {', '.join(KINDS)} (--kind), got {kind!r}")


def _prepare(root: Path, overwrite: bool) -> None:
    """Make sure `root` holds nothing from an earlier run, so file counts match the arguments."""
    ours = [root / "train", root / "test", root / "ground_truth", root / "README.md"]
    existing = [path for path in ours if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{root} already holds a category; pass overwrite=True (--overwrite) to replace it"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _paint(painter: Painter, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply a defect painter, retrying in the (rare) case it changed no pixel visibly."""
    for _ in range(_MAX_PAINT_TRIES):
        painted, mask = painter(image, rng)
        if mask.any():
            return painted, mask
    raise RuntimeError(f"{painter.__name__} left no visible change in {_MAX_PAINT_TRIES} tries")


def _name(index: int, count: int) -> str:
    """MVTec-style zero-padded file name: 000.png, or wider when there are 1000+ images."""
    return f"{index:0{max(3, len(str(count - 1)))}d}.png"


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image), mode="RGB").save(path)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path)


def _readme(
    category: str,
    command: str,
    kind: str,
    image_size: int,
    n_train: int,
    n_test_good: int,
    n_test_per_defect: int,
) -> str:
    """How the category was made, with the command that makes it again."""
    defects = ", ".join(DEFECTS)
    return f"""# {category}: synthetic anomaly-detection category

Generated by sspcab-inspect (`training/synth.py`); the same command always writes the same files:

    {command}

- texture: {kind} (procedural, `training/textures.py`), {image_size} x {image_size} RGB
- train/good: {n_train} normal images
- test/good: {n_test_good} normal images
- test/<defect>: {n_test_per_defect} images each, one defect per image, for {defects}
- ground_truth/<defect>/NNN_mask.png: 0 or 255; 255 marks exactly the pixels the defect changed
"""
