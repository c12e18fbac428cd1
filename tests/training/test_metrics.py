"""Tests for training/metrics.py: hand-computed values, and cross-checks on random data with ties."""

import numpy as np
import pytest
from scipy import ndimage

from training.metrics import (
    aupro,
    auroc,
    binary_stats,
    f1_max,
    flatten_maps,
    iou,
    pro_curve,
    roc_curve,
)

LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def _random_ties(seed: int, size: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Random labels and scores rounded to one decimal, so many scores are tied."""
    rng = np.random.default_rng(seed)
    labels = rng.random(size) < 0.3
    scores = np.round(rng.random(size) + 0.4 * labels, 1)
    return labels, scores


# --- roc_curve / auroc -----------------------------------------------------------------------


def test_roc_curve_hand_example():
    fpr, tpr, thresholds = roc_curve(LABELS, SCORES)
    np.testing.assert_array_equal(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])


def test_roc_curve_has_one_point_per_distinct_score():
    labels = np.array([0, 1, 0, 1, 1])
    scores = np.array([0.5, 0.5, 0.2, 0.9, 0.2])
    fpr, tpr, thresholds = roc_curve(labels, scores)
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.5, 0.2])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 1 / 3, 2 / 3, 1.0])


def test_auroc_hand_example():
    # Pairs (positive, negative): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert auroc(LABELS, SCORES) == 0.75


def test_auroc_counts_ties_as_half():
    # Pairs: 0.5=0.5 (1/2), 0.5>0.2, 0.9>0.5, 0.9>0.2 -> 3.5 of 4.
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
    assert auroc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5


def test_auroc_perfect_and_inverted():
    labels = np.array([False, False, True, True])
    assert auroc(labels, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc(labels, [0.4, 0.3, 0.2, 0.1]) == 0.0


def test_auroc_equals_trapezoid_area_under_roc_curve():
    labels, scores = _random_ties(seed=0)
    fpr, tpr, _ = roc_curve(labels, scores)
    area = np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2)
    assert auroc(labels, scores) == pytest.approx(area, abs=1e-12)


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_auroc_and_roc_curve_reject_single_class(labels):
    with pytest.raises(ValueError, match="single class"):
        auroc(labels, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="single class"):
        roc_curve(labels, [0.1, 0.2, 0.3])


def test_auroc_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        auroc([0, 255], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        auroc([0, 1], [0.1, np.nan])


def test_roc_and_auroc_match_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    for seed in range(5):
        labels, scores = _random_ties(seed)
        fpr, tpr, thresholds = roc_curve(labels, scores)
        ref_fpr, ref_tpr, ref_thresholds = metrics.roc_curve(labels, scores, drop_intermediate=False)
        np.testing.assert_allclose(fpr, ref_fpr)
        np.testing.assert_allclose(tpr, ref_tpr)
        np.testing.assert_array_equal(thresholds[1:], ref_thresholds[1:])
        assert auroc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores))


# --- f1_max ----------------------------------------------------------------------------------


def test_f1_max_hand_example():
    # Thresholds 0.8: TP1 FP0 -> 2/3; 0.4: TP1 FP1 -> 1/2; 0.35: TP2 FP1 -> 4/5; 0.1: -> 2/3.
    f1, threshold = f1_max(LABELS, SCORES)
    assert f1 == pytest.approx(0.8)
    assert threshold == 0.35


def test_f1_max_perfect_separation_and_ties():
    assert f1_max([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == (1.0, 0.3)
    # Everything tied: the only threshold predicts all positive, F1 = 2*2 / (2*2 + 2) = 2/3.
    f1, threshold = f1_max([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5])
    assert (f1, threshold) == (pytest.approx(2 / 3), 0.5)


def test_f1_max_threshold_reproduces_f1():
    labels, scores = _random_ties(seed=7)
    f1, threshold = f1_max(labels, scores)
    assert binary_stats(labels, scores >= threshold)["f1"] == pytest.approx(f1)


def test_f1_max_rejects_no_positive():
    with pytest.raises(ValueError, match="positive"):
        f1_max([0, 0, 0], [0.1, 0.2, 0.3])


def test_f1_max_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    for seed in range(5):
        labels, scores = _random_ties(seed)
        precision, recall, thresholds = metrics.precision_recall_curve(labels, scores)
        with np.errstate(invalid="ignore"):
            ref_f1 = 2 * precision * recall / (precision + recall)
        best = np.nanargmax(ref_f1)
        f1, threshold = f1_max(labels, scores)
        assert f1 == pytest.approx(ref_f1[best])
        assert threshold == thresholds[best]


# --- pro_curve / aupro -----------------------------------------------------------------------


def test_pro_curve_hand_example_and_aupro_divides_by_fpr_limit():
    # 4x4 image: top two rows form one region (8 px), bottom two rows are normal (8 px).
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2] = True
    scores = np.zeros((4, 4))
    scores[0] = 0.9  # half the region, above every normal pixel
    scores[1] = 0.65  # the other half
    scores[2, :3] = [0.8, 0.7, 0.6]  # three false positives; the other 5 normal px score 0
    fpr, pro = pro_curve([mask], [scores])
    # Thresholds: (above all), 0.9, 0.8, 0.7, 0.65, 0.6, 0.
    np.testing.assert_allclose(fpr, [0, 0, 1 / 8, 2 / 8, 2 / 8, 3 / 8, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 0.5, 1, 1, 1])
    # Area to 0.3: 0.25 * 0.5 + (0.3 - 0.25) * 1 = 0.175, divided by the limit 0.3 -> 7/12.
    # Stopping at the last point below the limit (FPR 0.25) would give 0.5 or 0.417 instead.
    assert aupro([mask], [scores]) == pytest.approx(7 / 12)
    assert aupro([mask], [scores], fpr_limit=0.25) == pytest.approx(0.5)
    assert aupro([mask], [scores], fpr_limit=1.0) == pytest.approx(0.875)


def test_pro_curve_tie_between_normal_and_anomalous_pixel_is_one_point():
    mask = np.array([[1, 0], [0, 0]], dtype=bool)
    scores = np.array([[0.5, 0.5], [0.1, 0.1]])
    fpr, pro = pro_curve([mask], [scores])
    np.testing.assert_allclose(fpr, [0, 1 / 3, 1])
    np.testing.assert_allclose(pro, [0, 1, 1])
    # Diagonal from (0, 0) to (1/3, 1) interpolated at 0.3 gives PRO 0.9: area 0.135 / 0.3.
    assert aupro([mask], [scores]) == pytest.approx(0.45)


def test_aupro_perfect_map_is_one():
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:3, 2:5] = True
    assert aupro([mask], [mask.astype(np.float32)]) == pytest.approx(1.0)


def test_aupro_weights_regions_equally_whatever_their_size():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = True  # region A, 1 px
    mask[3:5, 3:5] = True  # region B, 4 px, not touching A
    only_a = np.full((6, 6), 0.5)
    only_a[3:5, 3:5] = 0.0
    only_a[0, 0] = 1.0
    only_b = np.full((6, 6), 0.5)
    only_b[0, 0] = 0.0
    only_b[3:5, 3:5] = 1.0
    # Each map finds one region fully: PRO = (1 + 0) / 2 at FPR 0, whereas per-pixel overlap
    # would give 1/5 (A found) or 4/5 (B found).
    assert aupro([mask], [only_a]) == pytest.approx(0.5)
    assert aupro([mask], [only_b]) == pytest.approx(0.5)


def test_pro_regions_are_eight_connected():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one region of 2 px
    mask[4, 4] = True  # a second region
    scores = np.full((6, 6), 0.5)  # normal pixels
    scores[1, 1] = 0.0  # the missed half of the diagonal region
    scores[0, 0] = scores[4, 4] = 1.0
    _, pro = pro_curve([mask], [scores])
    # 8-connected: (1/2 + 1) / 2 = 0.75. With 4-connectivity it would be (1 + 0 + 1) / 3.
    assert pro[1] == pytest.approx(0.75)
    assert aupro([mask], [scores]) == pytest.approx(0.75)


def test_aupro_images_of_different_sizes():
    mask_a = np.zeros((4, 4), dtype=bool)
    mask_a[:2, :2] = True  # 4 px region, 12 normal px
    scores_a = mask_a.astype(float)
    mask_b = np.zeros((3, 5), dtype=bool)  # good image: 15 normal px
    scores_b = np.zeros((3, 5))
    scores_b[1, 2] = 2.0  # one false positive above every anomalous pixel
    fpr, pro = pro_curve([mask_a, mask_b], [scores_a, scores_b])
    np.testing.assert_allclose(fpr, [0, 1 / 27, 1 / 27, 1])
    np.testing.assert_allclose(pro, [0, 0, 1, 1])
    # Area: (0.3 - 1/27) * 1, divided by 0.3 -> 71/81.
    assert aupro([mask_a, mask_b], [scores_a, scores_b]) == pytest.approx(71 / 81)


def _brute_force_pro_curve(masks, anomaly_maps):
    """PRO curve by direct counting at every distinct score, the definition written out."""
    regions, normal_scores = [], []
    for mask, scores in zip(masks, anomaly_maps, strict=True):
        labeled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [scores[labeled == k] for k in range(1, count + 1)]
        normal_scores.append(scores[labeled == 0])
    normal_scores = np.concatenate(normal_scores)
    thresholds = np.unique(np.concatenate([s.ravel() for s in anomaly_maps]))[::-1]
    fpr = [0.0] + [np.mean(normal_scores >= t) for t in thresholds]
    pro = [0.0] + [np.mean([np.mean(r >= t) for r in regions]) for t in thresholds]
    return np.array(fpr), np.array(pro)


def test_pro_curve_matches_brute_force_on_random_maps_with_ties():
    rng = np.random.default_rng(3)
    shapes = [(7, 9), (5, 5), (8, 6)]
    masks = [rng.random(shape) < 0.25 for shape in shapes]
    masks[1][:] = False  # a good image
    maps = [np.round(rng.random(shape) + 0.3 * m, 1) for shape, m in zip(shapes, masks, strict=True)]
    fpr, pro = pro_curve(masks, maps)
    ref_fpr, ref_pro = _brute_force_pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(pro, ref_pro)


def test_pro_curve_rejects_bad_arguments():
    normal = np.zeros((3, 3), dtype=bool)
    scores = np.zeros((3, 3))
    with pytest.raises(ValueError, match="no anomalous region"):
        pro_curve([normal], [scores])
    with pytest.raises(ValueError, match="no normal pixel"):
        pro_curve([~normal], [scores])
    with pytest.raises(ValueError, match=r"masks\[0\] has shape"):
        pro_curve([normal], [np.zeros((3, 4))])
    with pytest.raises(ValueError, match="1 images"):
        pro_curve([normal], [scores, scores])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro([normal], [scores], fpr_limit=0.0)


# --- flatten_maps / binary_stats / iou -------------------------------------------------------


def test_flatten_maps_concatenates_images_of_different_sizes():
    flat = flatten_maps([np.arange(4).reshape(2, 2), np.arange(4, 10).reshape(2, 3)])
    np.testing.assert_array_equal(flat, np.arange(10))
    with pytest.raises(ValueError, match="empty"):
        flatten_maps([])


def test_binary_stats_hand_example():
    stats = binary_stats([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert (stats["tp"], stats["fp"], stats["tn"], stats["fn"]) == (2, 1, 1, 1)
    assert stats["precision"] == pytest.approx(2 / 3)
    assert stats["recall"] == pytest.approx(2 / 3)
    assert stats["accuracy"] == pytest.approx(3 / 5)
    assert stats["f1"] == pytest.approx(2 / 3)


def test_binary_stats_zero_division_is_zero():
    stats = binary_stats([False, False], [False, False])
    assert stats["precision"] == stats["recall"] == stats["f1"] == 0.0
    assert stats["accuracy"] == 1.0
    assert stats["tn"] == 2


def test_iou_pools_pixels_over_images_of_different_sizes():
    masks = [np.array([[1, 1], [0, 0]], dtype=bool), np.zeros((3, 3), dtype=bool)]
    predictions = [np.array([[1, 0], [1, 0]], dtype=bool), np.zeros((3, 3), dtype=bool)]
    predictions[1][2, 2] = True
    # Intersection 1 px; union 3 px in image 0 + 1 px in image 1.
    assert iou(masks, predictions) == pytest.approx(1 / 4)
    assert iou(masks, masks) == 1.0


def test_iou_empty_union_is_zero():
    empty = [np.zeros((2, 2), dtype=bool)]
    assert iou(empty, empty) == 0.0
