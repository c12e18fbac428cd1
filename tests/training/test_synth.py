"""Tests for training/synth.py, and for the textures and Perlin noise it draws normal images from."""

import argparse

import numpy as np
import pytest
from PIL import Image

from training.defects import DEFECTS
from training.synth import add_arguments, resolve_kind, run, write_category
from training.textures import KINDS, make_texture, perlin_noise

TINY = dict(seed=3, image_size=32, n_train=3, n_test_good=2, n_test_per_defect=2)


def _pngs(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_category(tmp_path_factory.mktemp("a"), "tiny", **TINY)


def test_layout_and_counts(tiny):
    assert tiny.name == "tiny"
    files = _pngs(tiny)
    assert [f for f in files if f.startswith("train/")] == [
        "train/good/000.png",
        "train/good/001.png",
        "train/good/002.png",
    ]
    assert sorted(p.name for p in (tiny / "test").iterdir()) == sorted(["good", *DEFECTS])
    assert len(list((tiny / "test/good").glob("*.png"))) == 2
    for defect in DEFECTS:
        assert sorted(p.name for p in (tiny / "test" / defect).iterdir()) == ["000.png", "001.png"]
        masks = sorted(p.name for p in (tiny / "ground_truth" / defect).iterdir())
        assert masks == ["000_mask.png", "001_mask.png"]
    assert "--seed 3" in (tiny / "README.md").read_text()


def test_images_are_rgb_and_masks_binary_non_empty(tiny):
    for path in tiny.rglob("*.png"):
        with Image.open(path) as image:
            assert image.size == (32, 32)
            if "ground_truth" in path.parts:
                assert image.mode == "L"
                values = np.asarray(image)
                assert set(np.unique(values)) <= {0, 255}
                assert (values == 255).any()
            else:
                assert image.mode == "RGB"


def test_same_seed_same_bytes_other_seed_other_images(tiny, tmp_path):
    again = write_category(tmp_path / "b", "tiny", **TINY)
    assert _pngs(again) == _pngs(tiny)
    other = write_category(tmp_path / "c", "tiny", **{**TINY, "seed": 4})
    differing = [k for k, v in _pngs(other).items() if v != _pngs(tiny)[k]]
    assert len(differing) == len(_pngs(tiny))


def test_more_images_leave_existing_ones_unchanged(tiny, tmp_path):
    bigger = write_category(tmp_path, "tiny", **{**TINY, "n_train": 4, "n_test_per_defect": 3})
    small, large = _pngs(tiny), _pngs(bigger)
    assert all(large[name] == data for name, data in small.items())
    assert len(large) == len(small) + 1 + 2 * len(DEFECTS)


def test_existing_category_needs_overwrite(tmp_path):
    args = {**TINY, "n_test_per_defect": 1}
    write_category(tmp_path, "x", **{**args, "n_train": 2})
    with pytest.raises(FileExistsError, match="overwrite"):
        write_category(tmp_path, "x", **args)
    root = write_category(tmp_path, "x", **{**args, "n_train": 1}, overwrite=True)
    assert [p.name for p in (root / "train/good").iterdir()] == ["000.png"]  # stale file gone


@pytest.mark.parametrize(
    "change, argument",
    [
        ({"n_train": 0}, "n_train"),
        ({"n_test_good": -1}, "n_test_good"),
        ({"n_test_per_defect": 0}, "n_test_per_defect"),
        ({"image_size": 16}, "image_size"),
        ({"kind": "wood"}, "kind"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_themselves(tmp_path, change, argument):
    with pytest.raises(ValueError, match=argument):
        write_category(tmp_path, "x", **{**TINY, **change})
    assert not (tmp_path / "x").exists()


def test_bad_category_name(tmp_path):
    with pytest.raises(ValueError, match="category"):
        write_category(tmp_path, "../escape", **TINY)


def test_command_line_hook(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sizes = [
        "--image-size",
        "32",
        "--n-train",
        "1",
        "--n-test-good",
        "1",
        "--n-test-per-defect",
        "1",
    ]
    args = parser.parse_args(["--out", str(tmp_path), "--category", "cli", *sizes, "--kind", "fabric"])
    assert run(args) == 0
    assert (tmp_path / "cli/ground_truth/hole/000_mask.png").is_file()
    assert "fabric" in capsys.readouterr().out


def test_auto_kind_is_a_stable_function_of_the_name():
    assert resolve_kind("auto", "demo") == resolve_kind("auto", "demo") in KINDS
    assert {resolve_kind("auto", f"c{i}") for i in range(20)} == set(KINDS)
    assert resolve_kind("tile", "demo") == "tile"


@pytest.mark.parametrize("kind", KINDS)
def test_textures_in_range_and_vary_like_one_product(kind):
    samples = [make_texture(kind, (48, 40), np.random.default_rng(i)) for i in range(4)]
    for sample in samples:
        assert sample.dtype == np.float32 and sample.shape == (48, 40, 3)
        assert sample.min() >= 0.0 and sample.max() <= 1.0
        assert sample.std() > 0.01  # a texture, not a flat colour
    assert not np.array_equal(samples[0], samples[1])
    means = np.array([s.mean(axis=(0, 1)) for s in samples])  # (4, 3) mean colour
    assert np.abs(means - means.mean(axis=0)).max() < 0.1  # the same product each time


def test_texture_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        make_texture("wood", (32, 32), np.random.default_rng(0))


@pytest.mark.parametrize("shape, resolution", [((37, 53), (3, 5)), ((64, 64), 2.5), ((5, 200), 1)])
def test_perlin_noise_shape_range_and_determinism(shape, resolution):
    noise = perlin_noise(shape, resolution, np.random.default_rng(0), octaves=3)
    assert noise.shape == shape and noise.dtype == np.float32
    assert noise.min() >= 0.0 and noise.max() <= 1.0
    assert noise.std() > 0.02
    again = perlin_noise(shape, resolution, np.random.default_rng(0), octaves=3)
    np.testing.assert_array_equal(noise, again)
    assert not np.array_equal(noise, perlin_noise(shape, resolution, np.random.default_rng(1)))


def test_perlin_noise_is_smooth_and_centred():
    noise = perlin_noise((128, 128), (4, 4), np.random.default_rng(0))
    assert abs(float(noise.mean()) - 0.5) < 0.05
    # Gradient noise is continuous: neighbours differ by far less than the overall spread.
    assert np.abs(np.diff(noise, axis=1)).max() < 0.1 < float(noise.max() - noise.min())


def test_perlin_noise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        perlin_noise((8, 8), (0, 2), np.random.default_rng(0))
    with pytest.raises(ValueError, match="octaves"):
        perlin_noise((8, 8), 2, np.random.default_rng(0), octaves=0)
