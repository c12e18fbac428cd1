"""Tests for models/checkpoint.py: round trip, no pickle, and a named reason for every defect."""

import json
import pickle
import struct
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.calibration import Calibration
from models.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from models.detector import AnomalyDetector, DetectorConfig
from models.head import HeadConfig
from models.preprocess import to_model_input
from models.scoring import ScoringConfig
from tests.conftest import tiny_config


def _contents(path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metadata = json.loads(f.metadata()[METADATA_KEY])
    return tensors, metadata


def _rewrite(src, dst, *, tensors=None, metadata=None):
    """Write a copy of checkpoint ``src`` to ``dst`` with its tensors or metadata edited."""
    old_tensors, old_metadata = _contents(src)
    save_file(
        old_tensors if tensors is None else tensors,
        str(dst),
        metadata={METADATA_KEY: json.dumps(old_metadata if metadata is None else metadata)},
    )
    return dst


def test_round_trip_gives_the_same_outputs_and_metadata(tmp_path):
    torch.manual_seed(0)
    detector = AnomalyDetector(tiny_config(channels=1, anomaly_map="ssim", smoothing_sigma=1.0)).eval()
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02, details={"n": 3})
    path = save_checkpoint(
        tmp_path / "sub" / "gear.safetensors",
        detector,
        category="gear",
        calibration=calibration,
        training={"epochs_run": 2},
    )
    assert not list(path.parent.glob("*.tmp"))
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the service's own user in its container

    loaded = load_checkpoint(path)
    x = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        expected, got = detector(x), loaded.detector(x)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    assert not loaded.detector.training
    assert loaded.calibration == calibration
    assert loaded.detector.config == detector.config
    assert (loaded.category, loaded.input_size, loaded.color_mode) == ("gear", 24, "L")
    meta = loaded.metadata
    for key in (
        "format_version",
        "category",
        "model",
        "preprocessing",
        "calibration",
        "training",
        "created_at",
    ):
        assert key in meta
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["training"] == {"epochs_run": 2}
    assert meta["preprocessing"]["input_size"] == 24
    assert read_metadata(path) == meta


def test_the_file_is_safetensors_and_loading_never_unpickles(tiny_checkpoint, monkeypatch):
    data = tiny_checkpoint.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert METADATA_KEY in header["__metadata__"]
    # A JSON header right after its 8-byte length: neither a zip nor a pickle container. (Its first
    # byte is the length's low byte, so it may be 0x80, the byte a pickle starts with.)
    assert data[8:9] == b"{" and not data.startswith(b"PK")

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint must load without pickle")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_checkpoint(tiny_checkpoint).category == "widget"


def _assert_error(path, reason_part):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message
    assert reason_part in message
    assert err.value.path == str(path)
    return err.value


@pytest.mark.parametrize("keep", [4, 100, 0.5, -10])
def test_truncated_file(tiny_checkpoint, tmp_path, keep):
    data = tiny_checkpoint.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(data[:n])
    _assert_error(broken, "not a readable safetensors file")


def test_not_a_checkpoint_at_all(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    _assert_error(junk, "not a readable safetensors file")


def test_wrong_format_version(tiny_checkpoint, tmp_path):
    _, metadata = _contents(tiny_checkpoint)
    path = _rewrite(tiny_checkpoint, tmp_path / "v2.safetensors", metadata={**metadata, "format_version": 2})
    err = _assert_error(path, "format version 2 is not supported")
    assert f"version {FORMAT_VERSION}" in err.reason


@pytest.mark.parametrize("key", ["format_version", "category", "model", "preprocessing", "calibration"])
def test_missing_metadata_key(tiny_checkpoint, tmp_path, key):
    _, metadata = _contents(tiny_checkpoint)
    del metadata[key]
    path = _rewrite(tiny_checkpoint, tmp_path / "partial.safetensors", metadata=metadata)
    _assert_error(path, f"metadata misses {key}")


def test_no_metadata(tiny_checkpoint, tmp_path):
    tensors, _ = _contents(tiny_checkpoint)
    path = tmp_path / "bare.safetensors"
    save_file(tensors, str(path))
    _assert_error(path, f"no '{METADATA_KEY}' metadata")


def test_invalid_model_metadata(tiny_checkpoint, tmp_path):
    _, metadata = _contents(tiny_checkpoint)
    metadata["model"]["cae"]["input_size"] = 25
    path = _rewrite(tiny_checkpoint, tmp_path / "bad_model.safetensors", metadata=metadata)
    _assert_error(path, "invalid model or calibration metadata")


def test_the_resize_mode_travels_in_the_checkpoint_and_older_ones_read_as_stretch(tmp_path):
    detector = AnomalyDetector(replace(tiny_config(), resize="letterbox")).eval()
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    path = save_checkpoint(tmp_path / "lb.safetensors", detector, category="lb", calibration=calibration)
    assert read_metadata(path)["preprocessing"]["resize"] == "letterbox"
    assert load_checkpoint(path).resize == "letterbox"
    _, metadata = _contents(path)
    del metadata["model"]["resize"]  # written before the letterbox existed
    older = _rewrite(path, tmp_path / "older.safetensors", metadata=metadata)
    assert load_checkpoint(older).resize == "stretch"


def test_the_padding_travels_in_the_checkpoint_and_older_ones_read_as_zeros(tmp_path):
    config = DetectorConfig(
        cae=replace(tiny_config().cae, padding="reflect"),
        scoring=ScoringConfig(anomaly_map="head"),
        head=HeadConfig(widths=(4, 8), padding="reflect"),
    )
    torch.manual_seed(0)
    detector = AnomalyDetector(config).eval()
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    path = save_checkpoint(tmp_path / "pad.safetensors", detector, category="pad", calibration=calibration)
    loaded = load_checkpoint(path).detector
    assert loaded.config.cae.padding == "reflect" and loaded.config.head.padding == "reflect"
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(loaded(x).anomaly_map, detector(x).anomaly_map)
    _, metadata = _contents(path)
    del metadata["model"]["cae"]["padding"], metadata["model"]["head"]["padding"]  # written before
    older = load_checkpoint(_rewrite(path, tmp_path / "older.safetensors", metadata=metadata)).detector
    assert older.config.cae.padding == "zeros" and older.config.head.padding == "zeros"
    assert not torch.equal(older(x).anomaly_map, detector(x).anomaly_map)  # the same weights, zero-padded


def test_the_image_size_travels_in_the_checkpoint_and_older_ones_score_at_the_cae_input(tmp_path):
    detector = AnomalyDetector(replace(tiny_config(), image_size=48)).eval()
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    path = save_checkpoint(tmp_path / "big.safetensors", detector, category="big", calibration=calibration)
    assert read_metadata(path)["preprocessing"]["input_size"] == 48
    loaded = load_checkpoint(path)
    assert loaded.input_size == 48 and loaded.detector.config.cae.input_size == 24
    x = torch.rand(1, 3, 48, 48)
    assert torch.equal(loaded.detector(x).anomaly_map, detector(x).anomaly_map)
    _, metadata = _contents(path)
    del metadata["model"]["image_size"]  # written before image sizes existed
    older = _rewrite(path, tmp_path / "older.safetensors", metadata=metadata)
    assert load_checkpoint(older).input_size == 24


def test_unknown_resize_mode(tiny_checkpoint, tmp_path):
    _, metadata = _contents(tiny_checkpoint)
    metadata["model"]["resize"] = "crop"
    path = _rewrite(tiny_checkpoint, tmp_path / "crop.safetensors", metadata=metadata)
    _assert_error(path, "resize must be one of")


def test_missing_tensor(tiny_checkpoint, tmp_path):
    tensors, _ = _contents(tiny_checkpoint)
    name = sorted(tensors)[0]
    del tensors[name]
    path = _rewrite(tiny_checkpoint, tmp_path / "missing.safetensors", tensors=tensors)
    _assert_error(path, f"missing tensors ['{name}']")


def test_unexpected_tensor(tiny_checkpoint, tmp_path):
    tensors, _ = _contents(tiny_checkpoint)
    tensors["extra.weight"] = torch.zeros(2)
    path = _rewrite(tiny_checkpoint, tmp_path / "extra.safetensors", tensors=tensors)
    _assert_error(path, "unexpected tensors ['extra.weight']")


def test_tensor_of_the_wrong_shape(tiny_checkpoint, tmp_path):
    tensors, _ = _contents(tiny_checkpoint)
    name = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[name] = torch.zeros(1, 1, 1, 1)
    path = _rewrite(tiny_checkpoint, tmp_path / "shape.safetensors", tensors=tensors)
    _assert_error(path, f"tensors of the wrong shape: {name} (1, 1, 1, 1)")


def test_not_a_file(tmp_path):
    _assert_error(tmp_path / "absent.safetensors", "no such file")
    _assert_error(tmp_path, "no such file")  # a directory


def test_a_checkpoint_prepares_images_as_it_was_trained(tmp_path):
    config = replace(tiny_config(), resize="letterbox", exposure_mean=0.3)
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    path = save_checkpoint(
        tmp_path / "lit.safetensors", AnomalyDetector(config), category="lit", calibration=calibration
    )
    images = [
        torch.randint(0, 256, (10, 30, 3), dtype=torch.uint8),
        torch.full((24, 12, 3), 9, dtype=torch.uint8),
    ]
    x = load_checkpoint(path).model_input(images)
    assert torch.equal(x, to_model_input(images, 24, "letterbox", 0.3))
    assert not torch.equal(x, to_model_input(images, 24, "letterbox"))


def test_the_region_of_interest_travels_in_the_checkpoint_and_crops_its_inputs(tmp_path):
    roi = (0.25, 0.0, 0.75, 0.5)
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    detector = AnomalyDetector(replace(tiny_config(), roi=roi))
    path = save_checkpoint(tmp_path / "roi.safetensors", detector, category="roi", calibration=calibration)
    assert read_metadata(path)["preprocessing"]["roi"] == list(roi)  # what serving reads
    loaded = load_checkpoint(path)
    assert loaded.roi == roi
    image = torch.randint(0, 256, (40, 40, 3), dtype=torch.uint8)
    assert torch.equal(loaded.model_input([image]), to_model_input([image[:20, 10:30]], 24))
    # The service passes its device: the box is cut on the host, then moved; the input is the same.
    assert torch.equal(loaded.model_input([image], torch.device("cpu")), loaded.model_input([image]))
    _, metadata = _contents(path)
    del metadata["model"]["roi"]  # written before regions of interest existed
    assert load_checkpoint(_rewrite(path, tmp_path / "older.safetensors", metadata=metadata)).roi is None
