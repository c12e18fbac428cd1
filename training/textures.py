"""Procedural normal textures for the synthetic inspection dataset, and the Perlin noise they use.

Each texture kind is one "product": brushed metal, woven fabric or a grained ceramic tile. Every
sample of a kind shares the same construction and colour, and differs in the random parts a real
production line would vary (brushing streaks, weave phase, grain, lighting), in a +-5% brightness
jitter and in sensor noise, so a model has to learn the texture rather than memorise an image.

`perlin_noise` is gradient noise (Perlin, SIGGRAPH 1985, with the quintic fade of "Improving
Noise", SIGGRAPH 2002). It is kept general because DRAEM (Zavrtanik et al., ICCV 2021,
arXiv 2108.07610) shapes its synthetic anomaly masks by thresholding the same kind of noise.
"""

import numpy as np
from scipy import ndimage

KINDS = ("metal", "fabric", "tile")

# Largest |value| 2-D gradient noise with unit gradients can reach (sqrt(dims) / 2); dividing by
# it maps noise into [0, 1] with a fixed scale, so a threshold means the same thing in every call.
_PERLIN_BOUND = np.sqrt(2.0) / 2.0

BRIGHTNESS_JITTER = 0.05  # relative, per image: exposure and lighting drift
SENSOR_NOISE_STD = 0.006  # per pixel and channel, about 1.5 grey levels of an 8-bit camera


def perlin_noise(
    shape: tuple[int, int],
    resolution: float | tuple[float, float],
    rng: np.random.Generator,
    octaves: int = 1,
    persistence: float = 0.5,
    lacunarity: float = 2.0,
) -> np.ndarray:
    """Fractal 2-D gradient (Perlin) noise.

    Args:
        shape: (H, W) of the output; need not be a multiple of the resolution.
        resolution: noise periods across the image for the first octave, (ry, rx) or one number
            for both; may be fractional.
        rng: source of the lattice gradients and of a random sub-cell offset per octave, so the
            lattice points (where gradient noise is always 0) do not sit on a fixed grid.
        octaves: number of layers summed; octave i has resolution * lacunarity**i.
        persistence: amplitude ratio between successive octaves.
        lacunarity: frequency ratio between successive octaves.

    Returns:
        float32 array (H, W) in [0, 1]; 0.5 is the noise's zero level, so thresholding at 0.5
        splits it into the halves DRAEM uses. Typical values stay within about [0.2, 0.8].
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) with positive sizes, got {shape}")
    if isinstance(resolution, int | float | np.number):
        resolution = (resolution, resolution)
    ry, rx = float(resolution[0]), float(resolution[1])
    if ry <= 0 or rx <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    if octaves < 1:
        raise ValueError(f"octaves must be at least 1, got {octaves}")
    if persistence <= 0 or lacunarity <= 0:
        raise ValueError("persistence and lacunarity must be positive")

    total = np.zeros(shape, dtype=np.float64)
    amplitude, amplitude_sum = 1.0, 0.0
    for octave in range(octaves):
        frequency = lacunarity**octave
        total += amplitude * _gradient_noise(shape, (ry * frequency, rx * frequency), rng)
        amplitude_sum += amplitude
        amplitude *= persistence
    noise = 0.5 + total / (2.0 * _PERLIN_BOUND * amplitude_sum)
    return np.clip(noise, 0.0, 1.0).astype(np.float32)


def _gradient_noise(
    shape: tuple[int, int], resolution: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """One octave of gradient noise in [-sqrt(2)/2, sqrt(2)/2], shape (H, W)."""
    h, w = shape
    ry, rx = resolution
    # Lattice coordinates of pixel centres, shifted by a random fraction of a cell.
    ys = (np.arange(h) + 0.5) * ry / h + rng.uniform(0.0, 1.0)
    xs = (np.arange(w) + 0.5) * rx / w + rng.uniform(0.0, 1.0)
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(int(ry) + 3, int(rx) + 3))
    grad_y, grad_x = np.sin(angles), np.cos(angles)

    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]  # (H, 1), (1, W)
    iy, ix = y0[:, None], x0[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        # Dot product of the corner's gradient with the offset from that corner.
        gy, gx = grad_y[iy + dy, ix + dx], grad_x[iy + dy, ix + dx]
        return gy * (fy - dy) + gx * (fx - dx)

    u, v = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - v) + corner(0, 1) * v
    bottom = corner(1, 0) * (1 - v) + corner(1, 1) * v
    return top * (1 - u) + bottom * u


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic 6t^5 - 15t^4 + 10t^3: zero first and second derivatives at 0 and 1."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def make_texture(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One normal (defect-free) sample of a product surface.

    Args:
        kind: one of KINDS.
        shape: (H, W) of the image.
        rng: the sample's generator; everything random about the sample comes from it.

    Returns:
        float32 RGB image (H, W, 3) in [0, 1].
    """
    if kind not in _SURFACES:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    surface = _SURFACES[kind](shape, rng)
    surface = surface * (1.0 + rng.uniform(-BRIGHTNESS_JITTER, BRIGHTNESS_JITTER))
    surface = surface + rng.normal(0.0, SENSOR_NOISE_STD, size=surface.shape)
    return np.clip(surface, 0.0, 1.0).astype(np.float32)


def _brushed_metal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Grey steel brushed along x: long thin streaks under a soft sheen, (H, W, 3)."""
    width = shape[1]
    # Brushing smears fine roughness along the stroke: noise blurred hard along x, barely along y.
    streaks = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0.7, width / 12), mode="wrap")
    streaks /= streaks.std() + 1e-12
    # Sheen: slow brightness change from the lighting and the part's slight curvature.
    sheen = perlin_noise(shape, (1.5, 1.5), rng, octaves=2) - 0.5
    grey = 0.55 + 0.035 * streaks + 0.15 * sheen
    return grey[..., None] * np.array([0.97, 1.0, 1.04])  # cool steel tint


def _woven_fabric(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Indigo plain weave: warp and weft threads alternately on top, (H, W, 3)."""
    h, w = shape
    pitch = max(4.0, min(h, w) / 16)  # thread spacing in pixels
    # The cloth lies at a different phase under the camera each time.
    u = (np.arange(w)[None, :] + rng.uniform(0, 2 * pitch)) / pitch
    v = (np.arange(h)[:, None] + rng.uniform(0, 2 * pitch)) / pitch
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - iu, v - iv
    warp_on_top = (iu + iv) % 2 == 0  # (H, W) plain weave checkerboard
    # A thread is a cylinder: bright along its axis, dark in the gaps, dipping where it crosses.
    warp = np.sin(np.pi * fu) ** 0.7 * (0.75 + 0.25 * np.sin(np.pi * fv))
    weft = np.sin(np.pi * fv) ** 0.7 * (0.75 + 0.25 * np.sin(np.pi * fu))
    relief = np.where(warp_on_top, warp, weft)
    # Yarn irregularity: each thread takes up a little more or less dye.
    warp_gain = 1.0 + 0.05 * rng.standard_normal(int(iu.max()) + 1)
    weft_gain = 1.0 + 0.05 * rng.standard_normal(int(iv.max()) + 1)
    gain = np.where(warp_on_top, warp_gain[iu], weft_gain[iv])
    slub = perlin_noise(shape, (3.0, 3.0), rng, octaves=2) - 0.5
    luminance = (0.3 + 0.7 * relief) * gain * (1.0 + 0.2 * slub)
    return luminance[..., None] * np.array([0.35, 0.53, 0.83])


def _grained_tile(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Beige ceramic tile: speckled, mottled body with mineral flecks and grout joints, (H, W, 3)."""
    h, w = shape
    speckle = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=0.8)
    speckle /= speckle.std() + 1e-12
    fleck_sigma = 0.7
    flecks = ndimage.gaussian_filter((rng.random(shape) < 0.004).astype(float), fleck_sigma)
    flecks *= 2 * np.pi * fleck_sigma**2  # one isolated fleck peaks at 1
    mottle = perlin_noise(shape, (3.0, 3.0), rng, octaves=3) - 0.5
    body = 1.0 + 0.035 * speckle + 0.25 * mottle - 0.35 * np.clip(flecks, 0.0, 1.0)
    tile = body[..., None] * np.array([0.80, 0.74, 0.64])

    # Grout joints on a fixed pitch; the part sits a few pixels differently in the fixture.
    pitch = min(h, w) / 2
    half_width = max(1.0, min(h, w) / 96)
    offset_y, offset_x = pitch / 2 + rng.uniform(-pitch / 8, pitch / 8, size=2)
    dist_y = np.abs((np.arange(h)[:, None] - offset_y + pitch / 2) % pitch - pitch / 2)
    dist_x = np.abs((np.arange(w)[None, :] - offset_x + pitch / 2) % pitch - pitch / 2)
    joint = np.clip(half_width + 0.5 - np.minimum(dist_y, dist_x), 0.0, 1.0)[..., None]
    grout = (0.55 + 0.02 * speckle)[..., None] * np.array([1.0, 1.0, 0.96])
    return tile * (1 - joint) + grout * joint


_SURFACES = {"metal": _brushed_metal, "fabric": _woven_fabric, "tile": _grained_tile}
