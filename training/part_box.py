"""``fit --roi auto``: a box around the part, found from the normal training images alone.

A line camera sees the part on a backdrop (a belt, a fixture, a plate) and the model's few pixels
are better spent on the part (``models.preprocess``, region of interest; on tire a box set by hand
lifted image AUROC on every seed: BENCHMARKS.md §2). The part is what does not look like the
frame's border: over the training images, each pixel's mean and its spread from image to image
are compared with those of a band along the border, in robust units (median and MAD, so specks
and a vignette do not count); a pixel that stands out in either is the part's. The box holds all
but the outermost 0.5 % of those pixels on each side (stray specks), widened by a margin for parts
that sit a little differently on the line.

No box is chosen — the whole frame is inspected, as before — when nothing stands out (a texture
that fills the frame: carpet, a tile, a web) or when the part's box would cover most of the frame
anyway. A part that reaches the border in the training images stands out up to it, so the box
reaches the frame's edge there too.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from models.preprocess import Box
from training.data import read_image

SAMPLE = 64  # training images looked at (evenly spaced): enough for a stable mean and spread
GRID = 128  # each image resized to GRID²: the box is a fraction of the frame, its pixels only vote
BAND = 4  # pixels of GRID along the border that stand for the backdrop
DEVIATIONS = 6.0  # robust standard deviations from the backdrop that make a pixel the part's
KEEP = 0.995  # share of the part's pixels inside the box (the rest: specks far out)
# Of the frame's side, added around the part on every side (``fit --roi-margin``). On tire a 2 %
# margin beat 5 % on both seeds at 4 800 bfloat16 steps and not at the default's 1 200 float32 steps
# (three-seed mean image AUROC 0.755 against 0.773; BENCHMARKS.md §2), so the wider one stays.
MARGIN = 0.05
MAX_MARGIN = 0.25  # a wider margin would box most frames whole
MAX_AREA = 0.8  # a box covering more of the frame saves too little to be worth a crop


def _robust_units(values: np.ndarray, band: np.ndarray) -> np.ndarray:
    """``values`` minus the band's median, over the band's spread (MAD as a standard deviation;
    at least one grey level, so a perfectly flat backdrop does not make every pixel stand out)."""
    median = float(np.median(values[band]))
    spread = max(1.4826 * float(np.median(np.abs(values[band] - median))), 1.0 / 255.0)
    return (values - median) / spread


def part_pixels(images: np.ndarray) -> np.ndarray:
    """(N, G, G) grey images in [0, 1] → (G, G) bool: where the part is, in any of them."""
    g = images.shape[-1]
    band = np.ones((g, g), dtype=bool)
    band[BAND:-BAND, BAND:-BAND] = False
    mean, spread = images.mean(axis=0), images.std(axis=0)
    stands_out = (np.abs(_robust_units(mean, band)) > DEVIATIONS) | (_robust_units(spread, band) > DEVIATIONS)
    return ndimage.binary_opening(stands_out)  # single pixels are noise, not a part


def box_around(part: np.ndarray, margin: float = MARGIN) -> Box | None:
    """The box (left, top, right, bottom, fractions) around ``part``'s pixels widened by ``margin``,
    or None when it has none."""
    check_margin(margin)
    rows, cols = np.nonzero(part)
    if rows.size == 0:
        return None
    g = part.shape[0]
    tail = (1 - KEEP) / 2
    top, bottom = np.quantile(rows, [tail, 1 - tail])
    left, right = np.quantile(cols, [tail, 1 - tail])
    return (
        round(max(0.0, float(left) / g - margin), 4),
        round(max(0.0, float(top) / g - margin), 4),
        round(min(1.0, (float(right) + 1) / g + margin), 4),
        round(min(1.0, (float(bottom) + 1) / g + margin), 4),
    )


def check_margin(margin: float) -> float:
    """``margin``, or a ValueError that says why it is not one."""
    if not 0 <= margin <= MAX_MARGIN:  # also refuses NaN
        raise ValueError(f"a margin is between 0 and {MAX_MARGIN:g} of the frame's side, got {margin:g}")
    return margin


def find_part_box(paths: Sequence[Path], margin: float = MARGIN) -> tuple[Box | None, str]:
    """The box ``fit --roi auto`` inspects for these training images (None: the whole frame), with
    ``margin`` around the part, and why, in words."""
    paths = list(paths)
    chosen = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, SAMPLE).round().astype(int))]
    grey = np.stack([_grey(p) for p in chosen])
    box = box_around(part_pixels(grey), margin)
    if box is None:
        return None, f"nothing in the {len(chosen)} images looked at stands out from their border"
    area = (box[2] - box[0]) * (box[3] - box[1])
    if area > MAX_AREA:
        return None, f"the part's box would cover {area:.0%} of the frame"
    return box, (
        f"the part's box in {len(chosen)} training images, {area:.0%} of the frame with a margin of "
        f"{margin:g} of its side"
    )


def _grey(path: Path) -> np.ndarray:
    image = Image.fromarray(read_image(path, "L")[:, :, 0])
    return np.asarray(image.resize((GRID, GRID), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
