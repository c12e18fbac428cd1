"""Synthetic anomalies for training the discriminative head, each with its exact mask.

After DRAEM (Zavrtanik et al., ICCV 2021): a region is cut out of a normal image and filled from an
anomaly source, blended with a random opacity. Regions are Perlin-noise blobs of random scale and
area (DRAEM's masks) or thin random-walk strokes (scratch- and crack-like, the small low-contrast
defects that reconstruction error misses). Sources need no download: procedural textures, another
normal image, the image itself shifted and turned (cut-paste style), or a brightness/contrast change
of the region. The mask is exactly the set of pixels that changed visibly, so the head is never
taught to call an unchanged pixel defective.
"""

import numpy as np
import torch
from scipy import ndimage

from training.seamless import seamless_clone
from training.textures import KINDS, make_texture, perlin_noise

MIN_CHANGE = 1.5 / 255  # a pixel belongs to the anomaly when some channel moved at least this much
SHAPES = ("perlin", "stroke")
SOURCES = ("texture", "other", "self", "intensity")


def perlin_region(size: int, rng: np.random.Generator) -> np.ndarray:
    """A blob-shaped region covering 0.2 %–15 % of the image (log-uniform), (size, size) bool."""
    scales = 2.0 ** rng.integers(1, 6, size=2)  # 2..32 periods across the image, per axis
    noise = perlin_noise((size, size), (float(scales[0]), float(scales[1])), rng, octaves=2)
    area = float(np.exp(rng.uniform(np.log(0.002), np.log(0.15))))
    return noise > np.quantile(noise, 1.0 - area)


def stroke_region(size: int, rng: np.random.Generator) -> np.ndarray:
    """A thin wandering line, 1–3 px wide, 10 %–60 % of the image long, (size, size) bool."""
    steps = max(4, int(rng.uniform(0.1, 0.6) * size))
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, steps))
    start = rng.uniform(0.15, 0.85, 2) * size
    points = start + np.cumsum(np.stack([np.sin(angle), np.cos(angle)], axis=1), axis=0)
    points = np.clip(np.round(points).astype(int), 0, size - 1)
    region = np.zeros((size, size), dtype=bool)
    region[points[:, 0], points[:, 1]] = True
    width = int(rng.integers(1, 4))
    return ndimage.binary_dilation(region, iterations=width - 1) if width > 1 else region


def anomaly_source(
    image: np.ndarray, other: np.ndarray, rng: np.random.Generator, kind: str | None = None
) -> np.ndarray:
    """What fills the region: (C, S, S) float in [0, 1], same shape as ``image``."""
    kind = kind or SOURCES[rng.integers(len(SOURCES))]
    c, s, _ = image.shape
    if kind == "texture":
        texture = make_texture(KINDS[rng.integers(len(KINDS))], (s, s), rng).transpose(2, 0, 1)
        texture = texture * rng.uniform(0.3, 1.7)  # foreign material, any brightness
        return np.clip(texture.mean(0, keepdims=True) if c == 1 else texture, 0, 1)
    if kind == "other":
        return np.rot90(other, k=int(rng.integers(4)), axes=(1, 2))
    if kind == "self":
        shifted = np.roll(image, tuple(rng.integers(s // 8, s - s // 8, 2)), axis=(1, 2))
        return np.flip(shifted, axis=int(rng.integers(1, 3)))
    gain = rng.uniform(0.4, 1.6, size=(c, 1, 1))
    return np.clip(image * gain + rng.uniform(-0.2, 0.2, size=(c, 1, 1)), 0, 1)


def synthesize(
    image: np.ndarray, other: np.ndarray, rng: np.random.Generator, seamless: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Paste one synthetic anomaly into a normal image.

    Args:
        image: (C, S, S) float32 in [0, 1], the normal image.
        other: (C, S, S) another normal image, a possible source.
        rng: everything random comes from it.
        seamless: probability that a blob is cloned seamlessly (``training.seamless``: no seam, no
            brightness step at its edge) instead of pasted; strokes are always pasted, since a
            seamless clone of a line a few pixels wide is nearly its surroundings.
    Returns:
        The augmented image (C, S, S) float32 and its exact mask (S, S) bool; the mask is empty only
        if three draws in a row changed nothing visibly (then the image is returned unchanged).
    """
    size = image.shape[-1]
    for _ in range(3):
        shape = SHAPES[int(rng.random() < 0.3)]  # 70 % blobs, 30 % strokes
        region = perlin_region(size, rng) if shape == "perlin" else stroke_region(size, rng)
        source = anomaly_source(image, other, rng)
        if seamless and shape == "perlin" and rng.random() < seamless:  # no draw when off: same stream
            source = seamless_clone(image, source, region)
        keep = rng.uniform(0.0, 0.8)  # opacity of the original inside the region (DRAEM's β)
        blended = (1 - keep) * source + keep * image
        changed = region & (np.abs(blended - image).max(axis=0) >= MIN_CHANGE)
        if changed.any():
            out = np.where(changed, blended, image).astype(np.float32)
            return out, changed
    return image.astype(np.float32, copy=True), np.zeros((size, size), dtype=bool)


def synthesize_batch(
    images: torch.Tensor, rng: np.random.Generator, probability: float = 0.5, seamless: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give each image of a (B, C, S, S) batch an anomaly with ``probability`` (blobs cloned
    seamlessly with probability ``seamless``).

    Returns:
        The augmented batch (B, C, S, S) and masks (B, S, S) float {0, 1}, on the batch's device.
    """
    array = images.detach().float().cpu().numpy()
    out, masks = array.copy(), np.zeros((array.shape[0], *array.shape[2:]), dtype=np.float32)
    for i in range(array.shape[0]):
        if rng.random() < probability:
            other = array[int(rng.integers(array.shape[0]))]
            out[i], mask = synthesize(array[i], other, rng, seamless)
            masks[i] = mask
    return torch.from_numpy(out).to(images.device), torch.from_numpy(masks).to(images.device)
