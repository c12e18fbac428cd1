"""Tests for training/data.py on a tiny fake MVTec AD tree written on the fly."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from training.data import (
    DataError,
    aspect_ratio,
    choose_resize,
    detect_color_mode,
    fingerprint,
    index_category,
    load_batch,
    mean_intensity,
    read_image,
    read_mask,
    split_train_val,
)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """<tmp>/data/widget: train/good in every format and mode, two defect types with masks."""
    cat = tmp_path / "data" / "widget"
    good = cat / "train" / "good"
    _save(good / "000.png", _rgb(20, 30, 0))
    _save(good / "001.jpg", _rgb(16, 16, 1))
    _save(good / "002.bmp", _rgb(12, 18, 2))
    _save(good / "003.tif", _rgb(10, 10, 3))
    _save(good / "004.png", _rgb(8, 8, 4), mode="RGBA")
    _save(good / "005.png", np.full((8, 8), 40000, dtype=np.uint16))  # 16-bit grayscale
    _save(good / "006.png", _rgb(9, 9, 6)[:, :, 0])  # 8-bit grayscale
    (good / "notes.txt").write_text("not an image")
    _save(cat / "test" / "good" / "000.png", _rgb(20, 30, 10))
    _save(cat / "test" / "scratch" / "000.png", _rgb(20, 30, 11))
    _save(cat / "test" / "scratch" / "001.jpg", _rgb(20, 30, 12))
    _save(cat / "test" / "hole" / "000.bmp", _rgb(20, 30, 13))
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:10, 5:10] = 255
    for defect, stem in (("scratch", "000"), ("scratch", "001"), ("hole", "000")):
        _save(cat / "ground_truth" / defect / f"{stem}_mask.png", mask)
    return tmp_path / "data"


def test_index_category_reads_the_layout(tree):
    index = index_category(tree, "widget")
    assert index.root == tree / "widget"
    assert index.category == "widget"
    assert [p.name for p in index.train] == [
        f"00{i}.{s}" for i, s in enumerate(["png", "jpg", "bmp", "tif", "png", "png", "png"])
    ]
    assert [(s.defect, s.path.name) for s in index.test] == [
        ("good", "000.png"),
        ("hole", "000.bmp"),
        ("scratch", "000.png"),
        ("scratch", "001.jpg"),
    ]
    assert index.test[0].mask_path is None and not index.test[0].is_anomalous
    assert index.test[3].mask_path == tree / "widget" / "ground_truth" / "scratch" / "001_mask.png"
    assert index.test[3].is_anomalous
    assert index.defect_types == ["hole", "scratch"]


def test_missing_mask_names_the_expected_path(tree):
    expected = tree / "widget" / "ground_truth" / "hole" / "000_mask.png"
    expected.unlink()
    with pytest.raises(DataError, match="has no mask") as err:
        index_category(tree, "widget")
    assert str(expected) in str(err.value)
    assert str(tree / "widget" / "test" / "hole" / "000.bmp") in str(err.value)


def test_missing_train_good_names_the_path(tmp_path):
    (tmp_path / "empty_cat").mkdir()
    with pytest.raises(DataError) as err:
        index_category(tmp_path, "empty_cat")
    assert str(tmp_path / "empty_cat" / "train" / "good") in str(err.value)


def test_empty_train_good_names_the_path(tmp_path):
    good = tmp_path / "cat" / "train" / "good"
    good.mkdir(parents=True)
    (good / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="holds no images") as err:
        index_category(tmp_path, "cat")
    assert str(good) in str(err.value)


def test_unknown_category_lists_the_available_ones(tree):
    with pytest.raises(DataError, match="available: widget") as err:
        index_category(tree, "gadget")
    assert str(tree / "gadget") in str(err.value)


def test_missing_data_root(tmp_path):
    with pytest.raises(DataError, match="is not a directory") as err:
        index_category(tmp_path / "nowhere", "widget")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_test_images_are_needed_only_when_asked(tree):
    for folder in ("test", "ground_truth"):
        for path in sorted((tree / "widget" / folder).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
    assert index_category(tree, "widget", need_test=False).test == []
    with pytest.raises(DataError, match="holds no test images") as err:
        index_category(tree, "widget")
    assert str(tree / "widget" / "test") in str(err.value)


def test_split_is_seeded_disjoint_and_complete():
    paths = [Path(f"{i:03d}.png") for i in range(20)]
    train, val = split_train_val(paths, 0.25, seed=7)
    assert (train, val) == split_train_val(paths, 0.25, seed=7)
    assert len(val) == 5 and len(train) == 15
    assert not set(train) & set(val)
    assert sorted(train + val) == paths
    assert train == sorted(train) and val == sorted(val)
    others = {tuple(split_train_val(paths, 0.25, seed=s)[1]) for s in range(5)}
    assert len(others) > 1  # the seed matters


def test_split_keeps_at_least_two_on_each_side():
    paths = [Path(f"{i}.png") for i in range(4)]
    train, val = split_train_val(paths, 0.01, seed=0)
    assert len(train) == 2 and len(val) == 2
    train, val = split_train_val(paths, 0.99, seed=0)
    assert len(train) == 2 and len(val) == 2
    with pytest.raises(DataError, match="at least 4"):
        split_train_val(paths[:3], 0.5, seed=0)
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(paths, 1.0, seed=0)


def test_fingerprint_is_stable_and_sees_changes(tree):
    index = index_category(tree, "widget")
    first = fingerprint(index.train, index.root)
    assert len(first) == 16
    assert fingerprint(list(reversed(index.train)), index.root) == first
    assert fingerprint(index.train[:-1], index.root) != first
    with index.train[0].open("ab") as f:
        f.write(b"\0")  # same names, one size changed
    assert fingerprint(index.train, index.root) != first


def test_detect_color_mode(tree):
    good = tree / "widget" / "train" / "good"
    assert detect_color_mode([good / "005.png", good / "006.png"]) == "L"  # 16-bit and 8-bit gray
    assert detect_color_mode([good / "006.png", good / "000.png"]) == "RGB"
    assert detect_color_mode([good / "004.png"]) == "RGB"  # RGBA


@pytest.mark.parametrize("color_mode", ["RGB", "L"])
def test_every_format_reads_in_the_model_mode(tree, color_mode):
    index = index_category(tree, "widget")
    channels = 3 if color_mode == "RGB" else 1
    for path in index.train:
        array = read_image(path, color_mode)
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == channels
    assert read_image(index.train[5], "L")[0, 0, 0] == 40000 >> 8  # 16-bit scaled, not clipped
    batch = load_batch(index.train, 12, color_mode, chunk=3)
    assert batch.shape == (7, channels, 12, 12)
    assert batch.min() >= 0 and batch.max() <= 1
    assert torch.equal(batch, load_batch(index.train, 12, color_mode))


def test_read_mask_and_unreadable_image(tree):
    mask = read_mask(tree / "widget" / "ground_truth" / "scratch" / "000_mask.png")
    assert mask.dtype == bool and mask.shape == (20, 30) and mask.sum() == 25
    broken = tree / "widget" / "train" / "good" / "007.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image") as err:
        read_image(broken, "RGB")
    assert str(broken) in str(err.value)


def test_images_of_one_shape_are_stretched(tmp_path):
    # 400 × 300 photos, one 402 × 300 (crop jitter within the tolerance): one geometry to learn.
    paths = [_save(tmp_path / f"{i}.png", _rgb(300, 400 + 2 * (i == 2), i)) for i in range(3)]
    mode, why = choose_resize(paths)
    assert mode == "stretch"
    assert "3 training images share one shape" in why and "1.33–1.34" in why


def test_images_of_varying_shape_are_letterboxed(tmp_path):
    paths = [_save(tmp_path / f"{i}.png", _rgb(h, w, i)) for i, (h, w) in enumerate([(40, 100), (80, 40)])]
    assert choose_resize(paths) == (
        "letterbox",
        "the 2 training images vary in shape (aspect ratios (width / height) 0.50–2.50)",
    )


def test_aspect_ratio_follows_the_exif_orientation_that_reading_applies(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    # Stored 40 wide, 20 high; shown (and read by read_image) turned a quarter.
    exif[ExifTags.Base.Orientation] = 6
    Image.fromarray(_rgb(20, 40, 0)).save(path, exif=exif)
    height, width = read_image(path, "RGB").shape[:2]
    assert aspect_ratio(path) == width / height == 0.5


def test_choose_resize_names_an_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png"):
        choose_resize([_save(tmp_path / "ok.png", _rgb(8, 8, 0)), bad])


def test_mean_intensity_weighs_every_image_the_same_whatever_its_size(tmp_path):
    small_white = _save(tmp_path / "white.png", np.full((2, 2, 3), 255, dtype=np.uint8))
    large_grey = _save(tmp_path / "grey.png", np.full((40, 60, 3), 51, dtype=np.uint8))
    assert mean_intensity([small_white, large_grey], "RGB") == pytest.approx((1.0 + 0.2) / 2)


def test_load_batch_scales_each_image_to_the_exposure_level(tmp_path):
    dim = _save(tmp_path / "dim.png", np.full((10, 10, 3), 40, dtype=np.uint8))
    bright = _save(tmp_path / "bright.png", np.full((10, 10, 3), 160, dtype=np.uint8))
    batch = load_batch([dim, bright], 8, "RGB", exposure_mean=0.5)
    assert torch.allclose(batch, torch.full_like(batch, 0.5), atol=1e-5)
    assert batch.shape == (2, 3, 8, 8)
