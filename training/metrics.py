"""Exact image-level and pixel-level anomaly detection metrics, in numpy.

Implements the metrics reported on MVTec AD: ROC curve and AUROC, the best F1 over all
thresholds (F1-max), the per-region overlap (PRO) curve and its normalised area up to a false
positive rate limit (AUPRO), plus confusion-matrix statistics and IoU for a fixed threshold.

The PRO curve follows Bergmann et al., "The MVTec Anomaly Detection Dataset: A Comprehensive
Real-World Dataset for Unsupervised Anomaly Detection", IJCV 2021, and their evaluation code
(`pro_curve_util.compute_pro`, `generic_util.trapezoid`): ground-truth regions are the
8-connected components of each mask, every region weighs the same whatever its size, and the
area is integrated with the trapezoid rule up to `fpr_limit` and divided by `fpr_limit`.

Conventions used throughout:
    * A pixel or image is predicted anomalous when ``score >= threshold``.
    * Every metric is exact: curves have one point per distinct score, ties included, and no
      score is binned or subsampled. Large inputs (tens of millions of pixels) are handled by
      sorting once and counting with binary searches or cumulative sums, never a Python loop
      over elements.
    * Scores keep their dtype. float32 anomaly maps sort faster and use half the memory of
      float64; the cast is left to the caller because it can merge nearly equal scores.
    * Pixel-level functions take lists of per-image arrays, so images of one dataset may have
      different resolutions.
"""

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

# 3x3 structuring element of ones: diagonal neighbours belong to the same region (8-connectivity),
# as in the MVTec AD evaluation code.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# --- argument checks -------------------------------------------------------------------------


def _as_binary(values: np.ndarray, name: str) -> np.ndarray:
    """Returns ``values`` as a bool array, refusing anything that is not 0/1 or bool."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values
    if not ((values == 0) | (values == 1)).all():
        raise ValueError(
            f"{name} must be bool or contain only 0 and 1; for 0/255 masks pass `{name} > 0` instead"
        )
    return values.astype(bool)


def _as_scores(values: np.ndarray, name: str) -> np.ndarray:
    """Returns ``values`` as a floating array (dtype kept if already floating), finite only."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite; found NaN or infinity")
    return values


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}")
    if a.size == 0:
        raise ValueError(f"{name_a} and {name_b} are empty; pass at least one element")


def _check_pairs(first: Sequence[np.ndarray], second: Sequence[np.ndarray], name_a: str, name_b: str) -> None:
    """Checks two per-image lists have the same length and pairwise equal shapes."""
    if len(first) != len(second):
        raise ValueError(f"{name_a} has {len(first)} images but {name_b} has {len(second)}")
    if len(first) == 0:
        raise ValueError(f"{name_a} and {name_b} are empty; pass at least one image")
    for index, (a, b) in enumerate(zip(first, second, strict=True)):
        if np.shape(a) != np.shape(b):
            raise ValueError(
                f"{name_a}[{index}] has shape {np.shape(a)} but {name_b}[{index}] has shape {np.shape(b)}"
            )


# --- sorting helpers -------------------------------------------------------------------------


def flatten_maps(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenates per-image maps of possibly different sizes into one flat array.

    Flatten masks and anomaly maps from lists in the same image order so pixels stay paired.

    Args:
        maps: Per-image arrays, e.g. anomaly maps (H_i, W_i) or masks (H_i, W_i).

    Returns:
        Array (sum_i H_i * W_i,) with the pixels of image 0 first, in row-major order.
    """
    if len(maps) == 0:
        raise ValueError("maps is empty; pass at least one per-image array")
    return np.concatenate([np.ravel(m) for m in maps])


def _split_by_label(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the sorted (ascending) scores of the positives and of the negatives.

    Two plain sorts replace one argsort: no index array, and the number of positives or
    negatives at or above any threshold is then a binary search away.
    """
    labels = _as_binary(labels, "labels")
    scores = _as_scores(scores, "scores")
    _check_same_shape(labels, scores, "labels", "scores")
    labels, scores = labels.ravel(), scores.ravel()
    positives, negatives = scores[labels], scores[~labels]  # boolean indexing copies: sort in place
    positives.sort()
    negatives.sort()
    return positives, negatives


def _require_both_classes(positives: np.ndarray, negatives: np.ndarray, metric: str) -> None:
    if positives.size == 0 or negatives.size == 0:
        present = "positive (1)" if positives.size else "negative (0)"
        raise ValueError(
            f"{metric} is undefined when labels hold a single class (only {present} labels); "
            "pass both normal and anomalous samples"
        )


def _distinct(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the distinct values of an ascending array and how often each occurs."""
    is_first = np.empty(sorted_scores.size, dtype=bool)
    is_first[:1] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=is_first[1:])
    starts = np.flatnonzero(is_first)
    counts = np.diff(np.append(starts, sorted_scores.size))
    return sorted_scores[starts], counts


def _count_at_or_above(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of entries of an ascending array that are >= each threshold."""
    return sorted_scores.size - np.searchsorted(sorted_scores, thresholds, side="left")


# --- threshold-free binary metrics -----------------------------------------------------------


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Computes the exact ROC curve, one point per distinct score.

    Args:
        labels: Ground truth (N,), bool or 0/1; 1 is anomalous.
        scores: Anomaly scores (N,); higher means more anomalous.

    Returns:
        ``(fpr, tpr, thresholds)``, each (M + 1,) for M distinct scores. ``thresholds`` is
        decreasing and starts with ``inf`` (nothing predicted anomalous), so the curve starts at
        (0, 0) and, at the lowest score, ends at (1, 1). Point i is for ``score >= thresholds[i]``.

    Raises:
        ValueError: If labels hold a single class.
    """
    positives, negatives = _split_by_label(labels, scores)
    _require_both_classes(positives, negatives, "roc_curve")
    thresholds = np.union1d(_distinct(positives)[0], _distinct(negatives)[0])[::-1]
    tpr = _count_at_or_above(positives, thresholds) / positives.size
    fpr = _count_at_or_above(negatives, thresholds) / negatives.size
    return (
        np.concatenate(([0.0], fpr)),
        np.concatenate(([0.0], tpr)),
        np.concatenate(([np.inf], thresholds)),
    )


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Computes the exact area under the ROC curve.

    Equals the Mann-Whitney U statistic divided by (positives * negatives): the probability
    that a random anomalous sample scores above a random normal one, ties counting one half.
    This is also the trapezoid area under ``roc_curve``.

    Args:
        labels: Ground truth (N,), bool or 0/1; 1 is anomalous.
        scores: Anomaly scores (N,); higher means more anomalous.

    Returns:
        AUROC in [0, 1]; 0.5 for uninformative scores.

    Raises:
        ValueError: If labels hold a single class.
    """
    positives, negatives = _split_by_label(labels, scores)
    _require_both_classes(positives, negatives, "auroc")
    values, counts = _distinct(positives)
    below = np.searchsorted(negatives, values, side="left")
    at_or_below = np.searchsorted(negatives, values, side="right")
    # 2U = sum over positives of (2 * negatives below + negatives tied) = below + at_or_below.
    # Integer arithmetic keeps it exact: 2U <= 2 * P * N stays far below 2**53 for 50M pixels.
    twice_u = int(np.sum(counts * (below + at_or_below)))
    return twice_u / (2.0 * positives.size * negatives.size)


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Finds the best F1 score over all thresholds and the threshold reaching it.

    Only the distinct scores of positives are tried: moving a threshold up to the next
    positive score keeps every true positive and drops false positives, so F1 cannot fall,
    and the maximum over all distinct scores is reached at a positive score.

    Args:
        labels: Ground truth (N,), bool or 0/1; 1 is anomalous.
        scores: Anomaly scores (N,); higher means more anomalous.

    Returns:
        ``(f1, threshold)``: the maximum F1 and the lowest threshold reaching it, for the rule
        ``score >= threshold``.

    Raises:
        ValueError: If there is no positive label (F1 is then 0 at every threshold).
    """
    positives, negatives = _split_by_label(labels, scores)
    if positives.size == 0:
        raise ValueError(
            "f1_max is undefined without positive (1) labels; pass at least one anomalous sample"
        )
    thresholds, _ = _distinct(positives)
    tp = _count_at_or_above(positives, thresholds)
    fp = _count_at_or_above(negatives, thresholds)
    # F1 = 2TP / (2TP + FP + FN) with FN = P - TP.
    f1 = 2.0 * tp / (tp + fp + positives.size)
    best = int(np.argmax(f1))  # first maximum, thresholds ascending: the lowest threshold
    return float(f1[best]), float(thresholds[best])


# --- per-region overlap ----------------------------------------------------------------------


def _label_regions(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    """Numbers the 8-connected ground-truth regions of all masks consecutively.

    Returns:
        ``(region_ids, num_regions)``: region_ids (sum_i H_i * W_i,) int32 in mask order, 0 for
        normal pixels and 1..num_regions for the pixels of each region over all images.
    """
    region_ids = []
    num_regions = 0
    for index, mask in enumerate(masks):
        mask = _as_binary(mask, f"masks[{index}]")
        if mask.ndim != 2:
            raise ValueError(f"masks[{index}] must be 2-D (H, W); got shape {mask.shape}")
        labeled, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        labeled = labeled.ravel()
        labeled[labeled > 0] += num_regions
        region_ids.append(labeled)
        num_regions += count
    return np.concatenate(region_ids), num_regions


def _last_of_each_run(sorted_scores: np.ndarray) -> np.ndarray:
    """Indices of the last element of each run of equal values in a sorted array."""
    is_last = np.empty(sorted_scores.size, dtype=bool)
    is_last[-1:] = True
    np.not_equal(sorted_scores[:-1], sorted_scores[1:], out=is_last[:-1])
    return np.flatnonzero(is_last)


def pro_curve(
    masks: Sequence[np.ndarray], anomaly_maps: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Computes the exact per-region overlap (PRO) curve of Bergmann et al. (IJCV 2021).

    For a threshold t, PRO(t) is the mean over all ground-truth regions of the dataset of the
    fraction of the region's pixels with ``score >= t``, and FPR(t) is the fraction of all
    normal pixels with ``score >= t``. Pixels are sorted by score once; going down the scores,
    a pixel of region k raises PRO by 1 / (|k| * num_regions) and a normal pixel raises FPR by
    1 / num_normal. Cumulative sums, read at the last pixel of each run of equal scores, give
    one point per distinct score.

    Args:
        masks: Per-image ground truth (H_i, W_i), bool or 0/1. Regions are 8-connected
            components of each mask; masks without anomalies contribute only normal pixels.
        anomaly_maps: Per-image anomaly scores (H_i, W_i), same shapes as ``masks``.

    Returns:
        ``(fpr, pro)``, each (M + 1,) for M distinct scores: non-decreasing, starting at (0, 0)
        (threshold above every score) and ending at (1, 1) (threshold at the lowest score).

    Raises:
        ValueError: If the masks hold no anomalous region or no normal pixel, or if shapes differ.
    """
    _check_pairs(masks, anomaly_maps, "masks", "anomaly_maps")
    region_ids, num_regions = _label_regions(masks)  # (P,)
    scores = _as_scores(flatten_maps(anomaly_maps), "anomaly_maps")  # (P,)
    region_sizes = np.bincount(region_ids)  # index 0 counts the normal pixels
    if num_regions == 0:
        raise ValueError("masks contain no anomalous region; PRO needs at least one")
    num_normal = int(region_sizes[0])
    if num_normal == 0:
        raise ValueError("masks contain no normal pixel; the false positive rate is undefined")

    pro_step = np.zeros(num_regions + 1)  # per region id; normal pixels (id 0) add nothing
    pro_step[1:] = 1.0 / (region_sizes[1:] * num_regions)
    descending = np.argsort(scores)[::-1]
    ids = region_ids[descending]  # (P,) region ids in descending score order
    run_ends = _last_of_each_run(scores[descending])
    del descending, region_ids

    fpr = np.cumsum(ids == 0)[run_ends] / num_normal
    pro = np.cumsum(pro_step[ids])[run_ends]
    # At the lowest score every pixel is above the threshold: pin (1, 1) exactly rather than
    # leave the rounding of a long float sum, and keep earlier points within [0, 1] likewise.
    pro[-1] = 1.0
    np.minimum(pro, 1.0, out=pro)
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))


def _area_up_to(x: np.ndarray, y: np.ndarray, x_limit: float) -> float:
    """Trapezoid area under a piecewise-linear curve from x[0] to x_limit.

    ``x`` is non-decreasing with x[0] <= x_limit <= x[-1]. When the limit falls inside a
    segment, the curve is interpolated linearly at the limit, as in MVTec's `trapezoid`.
    """
    end = int(np.searchsorted(x, x_limit, side="right"))  # first point beyond the limit
    xs, ys = x[:end], y[:end]
    if xs[-1] < x_limit:  # the segment (end - 1, end) crosses the limit; x[end] > x_limit
        x0, x1, y0, y1 = x[end - 1], x[end], y[end - 1], y[end]
        xs = np.append(xs, x_limit)
        ys = np.append(ys, y0 + (y1 - y0) * (x_limit - x0) / (x1 - x0))
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


def aupro(masks: Sequence[np.ndarray], anomaly_maps: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Computes the normalised area under the PRO curve up to a false positive rate limit.

    The curve from ``pro_curve`` is integrated with the trapezoid rule from FPR 0 to
    ``fpr_limit`` (interpolated linearly at the limit) and divided by ``fpr_limit``, so a
    perfect anomaly map scores 1.0, as in Bergmann et al. (IJCV 2021).

    Args:
        masks: Per-image ground truth (H_i, W_i), bool or 0/1.
        anomaly_maps: Per-image anomaly scores (H_i, W_i), same shapes as ``masks``.
        fpr_limit: Upper integration limit on the false positive rate, in (0, 1].

    Returns:
        AUPRO in [0, 1].

    Raises:
        ValueError: If ``fpr_limit`` is outside (0, 1], or as ``pro_curve``.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")
    fpr, pro = pro_curve(masks, anomaly_maps)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


# --- fixed-threshold metrics -----------------------------------------------------------------


def binary_stats(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float | int]:
    """Computes confusion-matrix statistics of binary predictions.

    A ratio whose denominator is zero (e.g. precision with no predicted positive) is reported
    as 0.0, like scikit-learn's ``zero_division=0``.

    Args:
        labels: Ground truth, any shape, bool or 0/1; 1 is anomalous.
        predictions: Predicted labels, same shape, bool or 0/1.

    Returns:
        Dict with ``tp``, ``fp``, ``tn``, ``fn`` (int) and ``precision``, ``recall``,
        ``accuracy``, ``f1`` (float).
    """
    labels = _as_binary(labels, "labels")
    predictions = _as_binary(predictions, "predictions")
    _check_same_shape(labels, predictions, "labels", "predictions")
    tp = int(np.count_nonzero(labels & predictions))
    fp = int(np.count_nonzero(~labels & predictions))
    fn = int(np.count_nonzero(labels & ~predictions))
    tn = labels.size - tp - fp - fn
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "accuracy": _ratio(tp + tn, labels.size),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def iou(masks: Sequence[np.ndarray], predictions: Sequence[np.ndarray]) -> float:
    """Computes the intersection over union of predicted and true anomalous pixels.

    Intersection and union are pooled over all images before dividing, so large defects
    weigh more than small ones. When the union is empty (no true and no predicted anomalous
    pixel anywhere) there is nothing to segment and the IoU is reported as 0.0, the same
    0/0 convention as ``binary_stats``; callers should not read it as a failure.

    Args:
        masks: Per-image ground truth (H_i, W_i), bool or 0/1.
        predictions: Per-image predicted masks, same shapes as ``masks``.

    Returns:
        IoU in [0, 1].
    """
    _check_pairs(masks, predictions, "masks", "predictions")
    intersection = union = 0
    for index, (mask, prediction) in enumerate(zip(masks, predictions, strict=True)):
        mask = _as_binary(mask, f"masks[{index}]")
        prediction = _as_binary(prediction, f"predictions[{index}]")
        intersection += int(np.count_nonzero(mask & prediction))
        union += int(np.count_nonzero(mask | prediction))
    return _ratio(intersection, union)
