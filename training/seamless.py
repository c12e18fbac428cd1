"""Seamless (Poisson) cloning: paste a source into a region so that no seam or brightness step shows.

Pérez, Gangnet and Blake, "Poisson image editing" (SIGGRAPH 2003): inside the region the result
keeps the source's gradients, and on the region's edge it meets the image. NSA (Schlüter et al.,
"Natural synthetic anomalies for self-supervised anomaly detection and localization", ECCV 2022)
builds training anomalies this way: a head trained on alpha-blended pastes can learn to find the
seam and the brightness step, which real defects seldom have; a seamless paste leaves it only the
foreign structure inside.

With f = source + h, the Poisson equation Δf = Δsource makes h harmonic in the region, with
h = image − source on the pixels just outside it. That is one sparse linear system per region,
factorised once and solved for every channel.
"""

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def seamless_clone(image: np.ndarray, source: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Clone ``source`` into ``image`` inside ``region``.

    Args:
        image: (C, H, W) float in [0, 1], the destination.
        source: (C, H, W) float, what to clone, aligned with ``image``.
        region: (H, W) bool, where to clone. Its pixels on the image's border get no condition
            from outside the image (a free edge: the source's gradients hold up to it).
    Returns:
        (C, H, W) float32 in [0, 1], equal to ``image`` outside the region.
    """
    out = image.astype(np.float32, copy=True)
    ys, xs = np.nonzero(region)
    n = ys.size
    if n == 0:
        return out
    h, w = region.shape
    index = np.full((h, w), -1, dtype=np.int64)
    index[ys, xs] = np.arange(n)
    difference = (image - source).astype(np.float64)  # h's value just outside the region
    degree = np.zeros(n)
    rhs = np.zeros((n, image.shape[0]))
    rows, cols = [], []
    for dy, dx in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        degree += inside
        ny, nx, me = ny[inside], nx[inside], np.arange(n)[inside]
        other = index[ny, nx]
        coupled = other >= 0
        rows.append(me[coupled])
        cols.append(other[coupled])
        np.add.at(rhs, me[~coupled], difference[:, ny[~coupled], nx[~coupled]].T)
    rows_, cols_ = np.concatenate(rows), np.concatenate(cols)
    diagonal = np.arange(n)
    # The tiny extra on the diagonal only matters for a region with no outside neighbour at all
    # (the whole image), whose system is otherwise singular: it pins the free constant to 0.
    laplacian = sparse.csc_matrix(
        (
            np.concatenate([degree + 1e-6, -np.ones(rows_.size)]),
            (np.concatenate([diagonal, rows_]), np.concatenate([diagonal, cols_])),
        ),
        shape=(n, n),
    )
    harmonic = splu(laplacian).solve(rhs)
    out[:, ys, xs] = (source[:, ys, xs] + harmonic.T).astype(np.float32)
    return np.clip(out, 0.0, 1.0)
