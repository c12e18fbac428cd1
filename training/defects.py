"""Defect painters for the synthetic inspection dataset, each returning the exact defect mask.

A painter draws one defect (scratch, crack, spot, hole, contamination) at a random place and size
fully inside the image, and returns the new image with a boolean mask. The mask is exactly the set
of pixels the painter changed: every painter composes its defect with soft alpha maps, then
`_commit` keeps a pixel's new value only where it moved by at least MIN_VISIBLE_CHANGE in some
channel and restores the original bit for bit elsewhere. The threshold is 1.5 grey levels, so the
mask also stays exact after the image is rounded to 8 bits (a change of >= 1 level always moves the
rounded value), which is what the ground-truth PNGs need.

Contrast, size and shape are drawn from wide ranges, so some defects are obvious and some (faint
scratches, pale stains) are hard, as on a real line.
"""

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from training.textures import perlin_noise

MIN_VISIBLE_CHANGE = 1.5 / 255  # smallest per-pixel change kept in a defect, in [0, 1] units
MIN_IMAGE_SIZE = 32  # every painter fits its smallest defect, margins included, in 32 x 32

Painter = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def paint_scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin (1-2 px) bright or dark curved line that fades in and out at its ends.

    Args:
        image: float RGB (H, W, 3) in [0, 1]; not modified.
        rng: source of the scratch's placement, shape and contrast.

    Returns:
        (float32 image (H, W, 3), bool mask (H, W) of exactly the changed pixels).
    """
    image = _as_image(image)
    size = min(image.shape[:2])
    length = rng.uniform(0.2, 0.6) * size
    heading = rng.uniform(0.0, np.pi)
    bend = rng.uniform(-0.2, 0.2) * length  # sideways bow at the middle
    direction = np.array([np.sin(heading), np.cos(heading)])  # (y, x)
    normal = np.array([direction[1], -direction[0]])
    # Quadratic Bezier from 0 to length * direction, control point lifted by 2 * bend.
    t = np.linspace(0.0, 1.0, max(8, int(4 * length)))[:, None]
    control = 0.5 * length * direction + 2 * bend * normal
    points = 2 * t * (1 - t) * control + t**2 * (length * direction)  # (N, 2)
    half_width = rng.uniform(0.35, 0.9)
    points = _place(points, image.shape[:2], rng, margin=half_width + 2)
    # Faint scratches are common: contrast is log-uniform between 4% and 30%.
    contrast = np.exp(rng.uniform(np.log(0.04), np.log(0.3))) * rng.choice([-1.0, 1.0])
    fade = np.sin(np.pi * t[:, 0]) ** 0.3
    alpha = _stroke_alpha(image.shape[:2], points, np.full(len(points), half_width), fade)
    return _commit(image, image + contrast * alpha[..., None])


def paint_crack(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark, jagged crack: a random-walk line, widest in the middle, with 1-3 side branches.

    Args:
        image: float RGB (H, W, 3) in [0, 1]; not modified.
        rng: source of the crack's path, branches and darkness.

    Returns:
        (float32 image (H, W, 3), bool mask (H, W) of exactly the changed pixels).
    """
    image = _as_image(image)
    size = min(image.shape[:2])
    length = rng.uniform(0.2, 0.35) * size
    width = rng.uniform(0.7, 1.3)  # half width at the widest point, px
    trunk, headings = _random_walk(np.zeros(2), rng.uniform(0, 2 * np.pi), length, rng)
    t = np.linspace(0.0, 1.0, len(trunk))
    paths, widths = [trunk], [width * (0.3 + 0.7 * np.sin(np.pi * t))]
    for _ in range(rng.integers(1, 4)):
        # A branch leaves the trunk at an angle and is thinner and shorter than it.
        k = rng.integers(len(trunk) // 5, 4 * len(trunk) // 5 + 1)
        turn = rng.uniform(0.4, 1.1) * rng.choice([-1.0, 1.0])
        branch, _ = _random_walk(trunk[k], headings[k] + turn, rng.uniform(0.25, 0.5) * length, rng)
        taper = np.linspace(1.0, 0.0, len(branch))
        paths.append(branch)
        widths.append(widths[0][k] * (0.3 + 0.4 * taper))
    points, half_widths = np.concatenate(paths), np.concatenate(widths)
    points = _place(points, image.shape[:2], rng, margin=half_widths.max() + 2)
    alpha = _stroke_alpha(image.shape[:2], points, half_widths, np.ones(len(points)))
    darkness = rng.uniform(0.55, 0.85)  # fraction of light the crack swallows
    return _commit(image, image * (1 - darkness * alpha[..., None]))


def paint_spot(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A soft-edged elliptical stain that tints the surface, leaving its texture visible.

    Args:
        image: float RGB (H, W, 3) in [0, 1]; not modified.
        rng: source of the stain's placement, shape, colour and strength.

    Returns:
        (float32 image (H, W, 3), bool mask (H, W) of exactly the changed pixels).
    """
    image = _as_image(image)
    h, w = image.shape[:2]
    semi_major = max(2.5, rng.uniform(0.04, 0.12) * min(h, w))
    semi_minor = semi_major * rng.uniform(0.5, 1.0)
    wobble = 0.08  # boundary irregularity, relative to the radius
    centre = _place(np.zeros((1, 2)), (h, w), rng, margin=semi_major * (1 + 3 * wobble) + 2)[0]
    dy, dx = np.arange(h)[:, None] - centre[0], np.arange(w)[None, :] - centre[1]
    angle = rng.uniform(0.0, np.pi)
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    radius = np.hypot(along / semi_major, across / semi_minor)  # 1 on the ellipse
    radius = radius / (1 + _boundary_wobble(np.arctan2(dy, dx), wobble, rng))
    edge_start = rng.uniform(0.3, 0.8)  # where the soft edge begins, relative to the radius
    strength = rng.uniform(0.4, 1.0)
    alpha = strength * (1 - _smoothstep(edge_start, 1.0, radius))
    stain = _STAIN_GAINS[rng.integers(len(_STAIN_GAINS))] * rng.uniform(0.9, 1.1, size=3)
    # A stain filters the light: a multiplicative tint, not an opaque paint.
    return _commit(image, image * (1 + alpha[..., None] * (stain - 1)))


def paint_hole(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark, roughly circular hole with a raised rim that catches the light on one side.

    Args:
        image: float RGB (H, W, 3) in [0, 1]; not modified.
        rng: source of the hole's placement, outline, depth and lighting.

    Returns:
        (float32 image (H, W, 3), bool mask (H, W) of exactly the changed pixels).
    """
    image = _as_image(image)
    h, w = image.shape[:2]
    radius = max(2.5, rng.uniform(0.03, 0.07) * min(h, w))
    wobble = 0.06
    rim_width = rng.uniform(1.0, 2.5)
    centre = _place(np.zeros((1, 2)), (h, w), rng, margin=radius * (1 + 3 * wobble) + 2 * rim_width + 2)[0]
    dy, dx = np.arange(h)[:, None] - centre[0], np.arange(w)[None, :] - centre[1]
    r, phi = np.hypot(dy, dx), np.arctan2(dy, dx)
    outline = radius * (1 + _boundary_wobble(phi, wobble, rng))
    signed = r - outline  # < 0 inside the hole
    light = np.cos(phi - rng.uniform(0.0, 2 * np.pi))  # 1 on the lit side

    # Burr: material pushed up around the hole, brighter where it faces the light.
    rim = np.exp(-0.5 * ((signed - rim_width / 2) / (rim_width / 2)) ** 2)
    rim = np.where(signed <= 2 * rim_width, rim, 0.0)
    rim_lift = rng.uniform(0.08, 0.2) * (0.55 + 0.45 * light)
    # Inside: nearly black, the inner wall opposite the light a little brighter.
    floor = rng.uniform(0.03, 0.12) * (1 - 0.6 * light * np.clip(r / outline, 0.0, 1.0))
    inside = np.clip(0.5 - signed, 0.0, 1.0)[..., None]  # anti-aliased outline
    painted = image + (rim * rim_lift)[..., None]
    painted = painted * (1 - inside) + floor[..., None] * inside
    return _commit(image, painted)


def paint_contamination(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An irregular Perlin-shaped blob of foreign material (grease, rust, powder, fibre).

    Args:
        image: float RGB (H, W, 3) in [0, 1]; not modified.
        rng: source of the blob's placement, outline, material and opacity.

    Returns:
        (float32 image (H, W, 3), bool mask (H, W) of exactly the changed pixels).
    """
    image = _as_image(image)
    h, w = image.shape[:2]
    patch = int(max(12, rng.uniform(0.1, 0.28) * min(h, w)))
    # Outline: Perlin noise pulled up in the middle, cut off before the patch border.
    yy, xx = np.mgrid[:patch, :patch] - (patch - 1) / 2
    window = np.clip(1 - (np.hypot(yy, xx) / (patch / 2 - 2)) ** 2, 0.0, 1.0)
    field = 0.55 * window + 0.45 * perlin_noise((patch, patch), 2.5, rng, octaves=3)
    blob = field > rng.uniform(0.5, 0.62)
    if not blob.any():
        blob = field >= field.max() - 1e-6
    material = _FOREIGN_COLOURS[rng.integers(len(_FOREIGN_COLOURS))]
    grain = perlin_noise((patch, patch), 6.0, rng, octaves=2)
    foreign = material * (0.7 + 0.6 * grain)[..., None]  # (P, P, 3)
    opacity = rng.uniform(0.7, 1.0)
    alpha = (ndimage.gaussian_filter(blob.astype(np.float64), 0.6) * opacity)[..., None]

    y0 = rng.integers(2, h - patch - 1)
    x0 = rng.integers(2, w - patch - 1)
    painted = image.copy()
    region = painted[y0 : y0 + patch, x0 : x0 + patch]
    painted[y0 : y0 + patch, x0 : x0 + patch] = region * (1 - alpha) + foreign * alpha
    return _commit(image, painted)


DEFECTS: dict[str, Painter] = {
    "scratch": paint_scratch,
    "crack": paint_crack,
    "spot": paint_spot,
    "hole": paint_hole,
    "contamination": paint_contamination,
}

# Per-channel transmittance of stains: rust/water, oil, soot, pale residue.
_STAIN_GAINS = np.array([[0.80, 0.62, 0.42], [0.78, 0.80, 0.55], [0.60, 0.60, 0.65], [1.15, 1.12, 1.02]])
# Foreign materials: grease/soot, rust, powder/paint, green plastic fibre, oily yellow.
_FOREIGN_COLOURS = np.array(
    [
        [0.10, 0.09, 0.08],
        [0.55, 0.30, 0.12],
        [0.93, 0.92, 0.88],
        [0.20, 0.45, 0.25],
        [0.75, 0.65, 0.30],
    ]
)


def _as_image(image: np.ndarray) -> np.ndarray:
    """Check an input image and return it as float32 (H, W, 3)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB of shape (H, W, 3), got {image.shape}")
    if min(image.shape[:2]) < MIN_IMAGE_SIZE:
        raise ValueError(f"image must be at least {MIN_IMAGE_SIZE} x {MIN_IMAGE_SIZE}, got {image.shape[:2]}")
    return image


def _commit(image: np.ndarray, painted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only visible changes, so that the mask is exactly the set of changed pixels."""
    painted = np.clip(painted, 0.0, 1.0).astype(np.float32)
    mask = np.abs(painted - image).max(axis=-1) >= MIN_VISIBLE_CHANGE  # (H, W)
    return np.where(mask[..., None], painted, image), mask


def _place(points: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, margin: float) -> np.ndarray:
    """Translate (N, 2) (y, x) points to a random spot at least `margin` px inside the image."""
    low = points.min(axis=0) - margin
    room = np.array(shape, dtype=np.float64) - 1 - (points.max(axis=0) + margin - low)
    if (room < 0).any():
        raise ValueError(f"defect of extent {np.ptp(points, axis=0)} does not fit in {shape}")
    return points - low + rng.uniform(0.0, 1.0, size=2) * room


def _stroke_alpha(
    shape: tuple[int, int], points: np.ndarray, half_widths: np.ndarray, strengths: np.ndarray
) -> np.ndarray:
    """Coverage (H, W) of a polyline given as dense (N, 2) points with per-point half width.

    Each point stamps an anti-aliased disc (1 at its centre, 0 beyond half_width + 0.5 px) scaled
    by its strength; a pixel takes the largest stamp that reaches it.
    """
    reach = int(np.ceil(half_widths.max() + 0.5))
    offsets = np.arange(-reach, reach + 1)
    oy, ox = (o.ravel() for o in np.meshgrid(offsets, offsets, indexing="ij"))  # (K,)
    py = np.round(points[:, :1]).astype(np.int64) + oy  # (N, K)
    px = np.round(points[:, 1:]).astype(np.int64) + ox
    distance = np.hypot(py - points[:, :1], px - points[:, 1:])
    coverage = np.clip(half_widths[:, None] + 0.5 - distance, 0.0, 1.0) * strengths[:, None]
    keep = (coverage > 0) & (py >= 0) & (py < shape[0]) & (px >= 0) & (px < shape[1])
    alpha = np.zeros(shape, dtype=np.float64)
    np.maximum.at(alpha, (py[keep], px[keep]), coverage[keep])
    return alpha


def _random_walk(
    start: np.ndarray, heading: float, length: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A jagged path of half-pixel steps that keeps its overall heading.

    The deviation from `heading` is a mean-reverting random process: locally a crack zigzags,
    globally it runs in one direction.

    Returns:
        (points (N, 2) in (y, x), headings (N,) in radians).
    """
    step = 0.5
    n_steps = max(4, int(length / step))
    kicks = rng.normal(0.0, 0.15, size=n_steps)
    deviation = np.empty(n_steps)
    current = 0.0
    for i, kick in enumerate(kicks):
        current = 0.9 * current + kick
        deviation[i] = current
    headings = heading + deviation
    steps = step * np.stack([np.sin(headings), np.cos(headings)], axis=1)
    points = start + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    return points, np.concatenate([headings[:1], headings])


def _boundary_wobble(phi: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Relative radius change around an outline: a few low harmonics with random phases."""
    harmonics = np.arange(2, 5)
    weights = amplitude * rng.uniform(0.3, 1.0, size=len(harmonics))
    phases = rng.uniform(0.0, 2 * np.pi, size=len(harmonics))
    return sum(a * np.cos(k * phi + p) for a, k, p in zip(weights, harmonics, phases, strict=True))


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a smooth cubic between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)
