"""The overlay an operator looks at: the image, a heat map where it matters, the defect outlined.

- The heat map colours the 8-bit anomaly map (``app.inference``: 128 = calibrated pixel threshold)
  with the inferno colormap. It is blended in only where the map exceeds half the threshold, with an
  opacity that grows from 0 there to ``MAX_ALPHA`` at 1.5 × the threshold, so normal regions stay
  exactly as photographed and strong anomalies stand out.
- The defect mask (at the pixel threshold used) is outlined in cyan, a colour inferno never takes:
  the pixels of the mask that its erosion removes, a band about 1/400 of the image's larger side
  wide so that it stays visible when a large image is shown small.

Pure numpy on the CPU, integer arithmetic in bands of rows; runs in the codec pool.
"""

import numpy as np
from scipy.ndimage import minimum_filter1d

from app.colormap import INFERNO
from app.inference import THRESHOLD_LEVEL

OUTLINE_COLOR = np.array([0, 255, 255], dtype=np.uint8)
HEAT_START = THRESHOLD_LEVEL // 2  # no tint below half the threshold
HEAT_FULL = THRESHOLD_LEVEL * 3 // 2  # full tint from 1.5 × the threshold
MAX_ALPHA = 0.7
BAND_ROWS = 128  # blend in bands of rows: bounded temporaries, cache-sized, skipped when untinted


def alpha_table() -> np.ndarray:
    """(256,) uint16 opacity per map level, in 1/256ths."""
    levels = np.arange(256, dtype=np.float64)
    ramp = np.clip((levels - HEAT_START) / (HEAT_FULL - HEAT_START), 0.0, 1.0)
    return np.round(ramp * MAX_ALPHA * 256).astype(np.uint16)


ALPHA = alpha_table()


def outline_width(height: int, width: int) -> int:
    return max(1, round(max(height, width) / 400))


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool → the mask's inner boundary band, ``width`` pixels wide: mask XOR eroded mask.

    The erosion uses a square of side 2·width + 1 and treats outside the image as background, so a
    defect touching the border is closed along it.
    """
    size = 2 * width + 1
    mask = np.ascontiguousarray(mask, dtype=bool)
    eroded = minimum_filter1d(mask.view(np.uint8), size, axis=0, mode="constant", cval=0)
    eroded = minimum_filter1d(eroded, size, axis=1, mode="constant", cval=0)
    return mask & ~eroded.view(bool)


def render_overlay(image: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend the heat map over the image and outline the mask.

    Args:
        image: (H, W, 3) or (H, W, 1) uint8.
        anomaly_map: (H, W) uint8 levels, 128 at the calibrated pixel threshold.
        mask: (H, W) bool defect mask.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image.copy()  # (H, W, 3)
    for top in range(0, rgb.shape[0], BAND_ROWS):
        rows = slice(top, top + BAND_ROWS)
        alpha = np.take(ALPHA, anomaly_map[rows])  # (h, W) uint16
        if not alpha.any():
            continue  # nothing above half the threshold here: leave the photo as it is
        a = alpha[:, :, None]
        heat = np.take(INFERNO, anomaly_map[rows], axis=0)  # (h, W, 3) uint8
        rgb[rows] = (rgb[rows].astype(np.uint16) * (256 - a) + heat * a + 128) >> 8
    rgb[outline(mask, outline_width(*mask.shape))] = OUTLINE_COLOR
    return rgb
