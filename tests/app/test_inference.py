"""The worker's per-batch computation: identical to running the detector on each image alone."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from app.inference import THRESHOLD_LEVEL, map_levels, run_batch, run_in_halves, warm_up
from models.calibration import Calibration
from models.checkpoint import load_checkpoint, save_checkpoint
from models.detector import AnomalyDetector
from models.preprocess import to_image_size, to_model_input
from models.scoring import defect_mask
from tests.app.conftest import RunsOutOfMemory, random_image
from tests.conftest import tiny_config

CPU = torch.device("cpu")


@pytest.fixture
def checkpoint(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint, CPU)


def alone(checkpoint, image):
    """The reference: one image through the detector, its map at the image's size."""
    with torch.inference_mode():
        output = checkpoint.detector(to_model_input([torch.from_numpy(image)], checkpoint.input_size))
        amap = to_image_size(output.anomaly_map[0], image.shape[0], image.shape[1])
    return float(output.image_score[0]), amap


def test_a_batch_gives_each_image_its_own_result(checkpoint):
    images = [random_image(40, 30, seed=1), random_image(17, 50, seed=2), random_image(24, 24, seed=3)]
    results = run_batch(checkpoint, images, [None, None, None], CPU)
    calibration = checkpoint.calibration
    for image, result in zip(images, results, strict=True):
        score, amap = alone(checkpoint, image)
        assert result.score == pytest.approx(score, rel=1e-5, abs=1e-7)
        expected_normalized = float(calibration.normalize(torch.tensor(score)))
        assert result.normalized_score == pytest.approx(expected_normalized, rel=1e-5)
        assert result.is_anomalous == (score > calibration.image_threshold)
        assert result.mask.shape == result.anomaly_map.shape == image.shape[:2]
        assert result.mask.dtype == bool and result.anomaly_map.dtype == np.uint8
        expected_mask = defect_mask(amap, calibration.pixel_threshold).numpy()
        assert (result.mask != expected_mask).mean() < 0.005  # float rounding at the threshold only
        assert result.anomalous_area_fraction == pytest.approx(result.mask.mean(), abs=1e-6)
        assert result.pixel_threshold == calibration.pixel_threshold


def test_a_threshold_override_changes_the_mask_not_the_verdict(checkpoint):
    image = random_image(seed=4)
    calibrated, everything, nothing = run_batch(checkpoint, [image] * 3, [None, 0.0, 1e9], CPU)
    assert everything.anomalous_area_fraction > 0.9 and everything.pixel_threshold == 0.0
    assert nothing.anomalous_area_fraction == 0.0 and not nothing.mask.any()
    assert everything.is_anomalous == nothing.is_anomalous == calibrated.is_anomalous
    assert everything.normalized_score == calibrated.normalized_score
    np.testing.assert_array_equal(everything.anomaly_map, calibrated.anomaly_map)  # calibrated scale


def test_an_exposure_normalised_checkpoint_scores_a_dimmer_shot_of_a_part_like_the_part(tmp_path):
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    paths = {}
    for name, level in (("plain", None), ("normalised", 0.4)):
        torch.manual_seed(0)  # the same weights in both
        detector = AnomalyDetector(replace(tiny_config(), exposure_mean=level)).eval()
        paths[name] = save_checkpoint(
            tmp_path / f"{name}.safetensors", detector, category=name, calibration=calibration
        )
    part = np.random.default_rng(5).integers(80, 240, (40, 30, 3), dtype=np.uint8)
    dimmer = (part * 0.5).round().astype(np.uint8)
    for name, same in (("normalised", True), ("plain", False)):
        checkpoint = load_checkpoint(paths[name], CPU)
        shot, dim_shot = run_batch(checkpoint, [part, dimmer], [None, None], CPU)
        assert (shot.score == pytest.approx(dim_shot.score, rel=0.02)) is same


def test_map_levels_put_the_threshold_at_128():
    amap = torch.tensor([[0.0, 0.25, 0.5], [0.75, 1.0, 5.0]])
    levels = map_levels(amap, pixel_threshold=0.5)
    assert levels.dtype == torch.uint8
    assert levels.tolist() == [[0, 64, THRESHOLD_LEVEL], [192, 255, 255]]


def test_warm_up_runs(checkpoint):
    warm_up(checkpoint, CPU)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_results(tiny_checkpoint):
    images = [random_image(40, 30, seed=1), random_image(64, 17, seed=2)]
    on_cpu = run_batch(load_checkpoint(tiny_checkpoint, CPU), images, [None, 0.01], CPU)
    cuda = torch.device("cuda")
    on_gpu = run_batch(load_checkpoint(tiny_checkpoint, cuda), images, [None, 0.01], cuda)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert b.score == pytest.approx(a.score, rel=1e-4, abs=1e-6)
        assert b.mask.shape == a.mask.shape and (b.mask != a.mask).mean() < 0.01
        assert isinstance(b.mask, np.ndarray) and isinstance(b.anomaly_map, np.ndarray)


def test_out_of_memory_splits_the_batch_in_halves_and_keeps_the_order(checkpoint, caplog):
    images = [random_image(20, 20 + i, seed=i) for i in range(5)]
    expected = [alone(checkpoint, image)[0] for image in images]
    checkpoint.detector = RunsOutOfMemory(checkpoint.detector, fits=2)
    results = run_in_halves(checkpoint, images, [None] * 5, CPU)
    assert checkpoint.detector.batch_sizes == [5, 2, 3, 1, 2]
    assert [r.score for r in results] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert [r.mask.shape[1] for r in results] == [20, 21, 22, 23, 24]
    assert "out of device memory on a batch of 5 images; retrying as 2 + 3" in caplog.text


def test_an_image_too_large_even_alone_is_its_own_failure(checkpoint):
    images = [random_image(20, 20, seed=i) for i in range(3)]
    checkpoint.detector = RunsOutOfMemory(checkpoint.detector, fits=0)
    results = run_in_halves(checkpoint, images, [None] * 3, CPU)
    assert all(isinstance(r, torch.cuda.OutOfMemoryError) for r in results)
    assert checkpoint.detector.batch_sizes == [3, 1, 2, 1, 1]


def test_other_errors_are_not_retried(checkpoint):
    checkpoint.detector = RunsOutOfMemory(checkpoint.detector, fits=0)
    checkpoint.detector.inner = None  # any other failure: TypeError, for the whole batch
    checkpoint.detector.fits = 10
    with pytest.raises(TypeError):
        run_in_halves(checkpoint, [random_image(seed=1), random_image(seed=2)], [None, None], CPU)
    assert checkpoint.detector.batch_sizes == [2]
