"""Tests for training/calibrate.py: thresholds from normal images, and the optimistic F1 alternative."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.calibration import from_normal_scores
from models.detector import with_test_time_flips
from models.flips import flip_views, merge_views
from models.precision import network_precision
from models.scoring import defect_mask, smooth
from tests.models.test_head import FUSED, head_detector
from tests.models.test_texture_memory import texture_detector
from training.calibrate import MIN_HEAD_SCALE, calibrate_f1_optimal, calibrate_on_normals, fused_map_scales
from training.inference import score_images

CPU = torch.device("cpu")


def test_calibrate_on_normals_uses_the_detectors_own_scores(tiny_detector):
    torch.manual_seed(1)
    val = torch.rand(5, 3, 24, 24)
    cal = calibrate_on_normals(tiny_detector, val, CPU, image_quantile=0.5, pixel_quantile=0.9)
    with torch.no_grad():
        out = tiny_detector(val)
    assert cal.image_threshold == pytest.approx(float(out.image_score.double().median()), rel=1e-6)
    assert cal.pixel_threshold == pytest.approx(
        float(torch.quantile(out.anomaly_map.double(), 0.9)), rel=1e-6
    )
    scores, maps, _ = score_images(tiny_detector, val, CPU)
    expected = from_normal_scores(scores, maps, 0.5, 0.9)
    assert cal == replace(expected, details={**expected.details, "precision": "float32"})
    assert cal.method == "normal-quantile"
    assert cal.details["normal_images"] == 5
    # the normal images sit around the threshold, as a median makes them
    normalized = cal.normalize(scores)
    assert (normalized < 0.5).sum() == 2 and (normalized > 0.5).sum() == 2


def _labelled_set():
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    labels = np.array([0, 0, 1, 1])
    maps = [
        torch.tensor([[0.1, 0.9], [0.2, 0.3]]),
        torch.tensor([[0.7, 0.1], [0.1, 0.1]]),
        torch.tensor([[0.6, 0.1], [0.0, 0.1]]),
    ]
    masks = [
        np.array([[0, 1], [0, 0]], dtype=bool),
        np.array([[1, 0], [0, 0]], dtype=bool),
        np.array([[1, 0], [0, 0]], dtype=bool),
    ]
    return scores, labels, maps, masks


def test_f1_optimal_thresholds_separate_a_separable_set_with_the_detectors_rule():
    scores, labels, maps, masks = _labelled_set()
    cal = calibrate_f1_optimal(scores, labels, maps, masks, normal_scale=0.05)
    assert cal.method.startswith("f1-optimal (optimistic")
    assert cal.details == {"image_f1": 1.0, "pixel_f1": 1.0, "images": 4}
    assert cal.score_scale == 0.05
    # The detector flags score > threshold: that rule must reproduce the F1-max of 1.
    assert ((scores > cal.image_threshold) == labels.astype(bool)).all()
    assert 0.2 <= cal.image_threshold < 0.8
    for amap, mask in zip(maps, masks, strict=True):
        assert torch.equal(defect_mask(amap, cal.pixel_threshold), torch.from_numpy(mask))
    assert 0.3 <= cal.pixel_threshold < 0.6
    assert cal.normalize(torch.tensor([0.8])).item() > 0.5  # the lowest defect reads as anomalous


def test_f1_optimal_with_no_lower_score_flags_everything():
    scores = np.array([0.5, 0.5, 0.7])
    labels = np.array([0, 1, 1])  # best F1 flags all three (a tie with a normal image)
    maps = [torch.full((2, 2), 0.5)] * 3
    masks = [np.ones((2, 2), dtype=bool)] * 3
    cal = calibrate_f1_optimal(scores, labels, maps, masks, normal_scale=1.0)
    assert (scores > cal.image_threshold).all()
    assert cal.image_threshold < 0.5 and cal.image_threshold == pytest.approx(0.5)
    assert bool(defect_mask(maps[0], cal.pixel_threshold).all())


def test_f1_optimal_resizes_maps_to_the_masks():
    scores, labels, maps, masks = _labelled_set()
    big = [np.kron(m, np.ones((3, 3), dtype=bool)) for m in masks]  # masks at 6×6, maps at 2×2
    cal = calibrate_f1_optimal(scores, labels, maps, big, normal_scale=1.0)
    assert 0 < cal.details["pixel_f1"] <= 1


def test_a_fused_map_gets_its_part_scales_from_the_normal_images_first():
    detector = head_detector(anomaly_map=FUSED)
    torch.manual_seed(2)
    val = torch.rand(6, 3, 24, 24)
    with torch.no_grad():
        recon = detector.cae(val)
        probability, error = detector.fused_parts(val, recon)
    sigma = detector.config.scoring.smoothing_sigma
    expected = [
        max(float(torch.quantile(smooth(part, sigma).double().flatten(), 0.9)), floor)
        for part, floor in ((probability, MIN_HEAD_SCALE), (error, 1e-12))
    ]
    assert fused_map_scales(detector, val, CPU, 0.9) == pytest.approx(expected, rel=1e-6)

    cal = calibrate_on_normals(detector, val, CPU, image_quantile=0.5, pixel_quantile=0.9)
    assert detector.map_scales.tolist() == pytest.approx(expected, rel=1e-6)
    assert cal.details["map_scales"] == pytest.approx(
        {"head": expected[0], "ssim+gms": expected[1], "quantile": 0.9}
    )
    # the thresholds are taken on the map as scaled, so both parts at their scale read about 1
    _, maps, _ = score_images(detector, val, CPU)
    assert cal.pixel_threshold == pytest.approx(float(torch.quantile(maps.double().flatten(), 0.9)), rel=1e-6)
    assert 0.5 < cal.pixel_threshold < 1.5


def test_with_test_time_flips_the_part_scales_are_those_of_the_averaged_parts():
    detector = with_test_time_flips(head_detector(anomaly_map=FUSED), ("h", "v", "hv"))
    torch.manual_seed(3)
    val = torch.rand(4, 3, 24, 24)
    flips = detector.config.scoring.test_time_flips
    with torch.no_grad():
        views = flip_views(val, flips)
        probability, error = detector.fused_parts(views, detector.cae(views))
    sigma = detector.config.scoring.smoothing_sigma
    expected = [
        float(torch.quantile(smooth(merge_views(part, flips), sigma).double().flatten(), 0.9))
        for part in (probability, error)
    ]
    assert fused_map_scales(detector, val, CPU, 0.9) == pytest.approx(expected, rel=1e-6)


def test_a_head_certain_of_every_normal_pixel_keeps_a_floor_scale():
    detector = head_detector(anomaly_map=FUSED)
    with torch.no_grad():
        detector.head.out.bias.fill_(-50.0)  # sigmoid(-50): the head says "normal" everywhere
        detector.head.out.weight.zero_()
    head_scale, _ = fused_map_scales(detector, torch.rand(3, 3, 24, 24), CPU, 0.999)
    assert head_scale == MIN_HEAD_SCALE


def test_a_texture_memory_gets_the_third_scale_and_an_empty_one_is_refused():
    detector = texture_detector()
    val = torch.rand(4, 3, 24, 24)
    with pytest.raises(ValueError, match="texture memory is empty"):
        calibrate_on_normals(detector, val, CPU, image_quantile=0.5, pixel_quantile=0.9)
    detector.texture.remember(torch.rand(6, 3, 24, 24))
    with torch.no_grad():
        distance = smooth(detector.texture(val), detector.config.scoring.smoothing_sigma)
    expected = float(torch.quantile(distance.double().flatten(), 0.9))
    scales = fused_map_scales(detector, val, CPU, 0.9)
    assert len(scales) == 3 and scales[2] == pytest.approx(expected, rel=1e-6)
    cal = calibrate_on_normals(detector, val, CPU, image_quantile=0.5, pixel_quantile=0.9)
    assert detector.map_scales.tolist() == pytest.approx(list(scales), rel=1e-6)
    assert cal.details["map_scales"]["texture"] == pytest.approx(expected, rel=1e-6)
    _, maps, _ = score_images(detector, val, CPU)  # thresholds on the map with all three parts
    assert cal.pixel_threshold == pytest.approx(float(torch.quantile(maps.double().flatten(), 0.9)), rel=1e-6)


def test_calibrating_in_bfloat16_takes_scales_and_thresholds_from_bfloat16_networks_and_records_it():
    val = torch.rand(6, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    detectors = {precision: head_detector(anomaly_map=FUSED) for precision in ("float32", "bfloat16")}
    cals = {p: calibrate_on_normals(d, val, CPU, 0.5, 0.9, precision=p) for p, d in detectors.items()}
    with torch.no_grad(), network_precision("bfloat16", CPU):
        recon = detectors["bfloat16"].cae(val)
        probability, error = detectors["bfloat16"].fused_parts(val, recon)
    sigma = detectors["bfloat16"].config.scoring.smoothing_sigma
    expected = [
        float(torch.quantile(smooth(part, sigma).double().flatten(), 0.9)) for part in (probability, error)
    ]
    assert detectors["bfloat16"].map_scales.tolist() == pytest.approx(expected, rel=1e-6)
    scores, maps, _ = score_images(detectors["bfloat16"], val, CPU, precision="bfloat16")
    assert cals["bfloat16"].pixel_threshold == pytest.approx(
        float(torch.quantile(maps.double().flatten(), 0.9)), rel=1e-6
    )
    assert cals["bfloat16"].image_threshold == pytest.approx(
        float(torch.quantile(scores.double(), 0.5)), rel=1e-6
    )
    assert (cals["bfloat16"].details["precision"], cals["float32"].details["precision"]) == (
        "bfloat16",
        "float32",
    )
    assert cals["bfloat16"].image_threshold != cals["float32"].image_threshold  # not the float32 answer
    assert cals["bfloat16"].image_threshold == pytest.approx(cals["float32"].image_threshold, rel=0.05)
