"""fit --roi auto: the part's box from normal images, the whole frame when there is no part to box."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.part_box import MARGIN, MAX_MARGIN, box_around, find_part_box, part_pixels

GRID = 128


def part_on_backdrop(
    rng: np.random.Generator, shape=(96, 128), part=(24, 32, 72, 100), jitter=2, specks=0
) -> np.ndarray:
    """A dark noisy backdrop with a brighter textured rectangle (top, left, bottom, right) on it,
    shifted by up to ``jitter`` pixels, and ``specks`` stray bright pixels; (H, W) uint8."""
    h, w = shape
    image = rng.normal(20, 3, size=shape)
    top, left, bottom, right = part
    dy, dx = rng.integers(-jitter, jitter + 1, size=2)
    image[top + dy : bottom + dy, left + dx : right + dx] = rng.normal(
        120, 30, size=(bottom - top, right - left)
    )
    for _ in range(specks):
        image[rng.integers(h), rng.integers(w)] = 255
    return np.clip(image, 0, 255).astype(np.uint8)


def write_images(folder: Path, images: list[np.ndarray]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def test_the_box_holds_the_part_with_its_margin_and_not_much_more(tmp_path):
    rng = np.random.default_rng(0)
    paths = write_images(tmp_path, [part_on_backdrop(rng, specks=5) for _ in range(20)])
    box, reason = find_part_box(paths)
    assert box is not None and "training images" in reason
    left, top, right, bottom = box
    # The part spans columns 32–99 of 128 and rows 24–71 of 96, each ±2 px, plus the margin.
    part = (32 / 128, 24 / 96, 100 / 128, 72 / 96)
    slack = MARGIN + 4 / 96
    assert part[0] - slack <= left <= part[0] - MARGIN + 0.02
    assert part[1] - slack <= top <= part[1] - MARGIN + 0.02
    assert part[2] + MARGIN - 0.02 <= right <= part[2] + slack
    assert part[3] + MARGIN - 0.02 <= bottom <= part[3] + slack


def test_a_part_that_only_varies_from_image_to_image_is_found_by_its_spread():
    rng = np.random.default_rng(1)
    images = rng.normal(0.5, 0.01, size=(16, GRID, GRID))
    images[:, 40:80, 50:90] = rng.uniform(0.3, 0.7, size=(16, 1, 1))  # mean as the backdrop's
    part = part_pixels(images.astype(np.float32))
    assert part[45:75, 55:85].all() and not part[:35].any() and not part[:, 95:].any()


def test_a_texture_that_fills_the_frame_is_inspected_whole(tmp_path):
    rng = np.random.default_rng(2)
    paths = write_images(
        tmp_path, [rng.normal(100, 25, size=(64, 64)).clip(0, 255).astype(np.uint8) for _ in range(12)]
    )
    box, reason = find_part_box(paths)
    assert box is None and "stands out" in reason


def test_a_part_that_fills_most_of_the_frame_is_inspected_whole(tmp_path):
    rng = np.random.default_rng(3)
    images = [part_on_backdrop(rng, part=(6, 6, 90, 122), jitter=0) for _ in range(8)]
    box, reason = find_part_box(write_images(tmp_path, images))
    assert box is None and "would cover" in reason


def test_images_of_other_sizes_give_the_same_box_in_fractions(tmp_path):
    rng = np.random.default_rng(4)
    small = [part_on_backdrop(rng, jitter=0) for _ in range(10)]
    large = [np.asarray(Image.fromarray(i).resize((256, 192), Image.Resampling.NEAREST)) for i in small]
    box_small, _ = find_part_box(write_images(tmp_path / "small", small))
    box_large, _ = find_part_box(write_images(tmp_path / "large", large))
    assert box_small is not None and box_large is not None
    assert box_small == pytest.approx(box_large, abs=0.02)


def test_no_part_pixels_no_box():
    assert box_around(np.zeros((GRID, GRID), dtype=bool)) is None


def test_the_margin_moves_every_side_by_itself_and_stays_inside_the_frame():
    part = np.zeros((GRID, GRID), dtype=bool)
    part[32:96, 2:64] = True  # rows 32–95, columns 2–63: near the left border
    tight, wide = box_around(part, margin=0.0), box_around(part, margin=0.1)
    assert tight == pytest.approx((2 / GRID, 32 / GRID, 64 / GRID, 96 / GRID), abs=1 / GRID)
    assert wide == pytest.approx((0.0, tight[1] - 0.1, tight[2] + 0.1, tight[3] + 0.1), abs=1e-4)


@pytest.mark.parametrize("margin", [-0.01, MAX_MARGIN + 0.01, float("nan")])
def test_a_margin_outside_its_range_is_refused(margin):
    part = np.ones((GRID, GRID), dtype=bool)
    with pytest.raises(ValueError, match="between 0 and"):
        box_around(part, margin)
