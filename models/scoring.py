"""Anomaly maps from an image and its reconstruction, image scores, and defect masks.

Maps are batched torch operations so that the service computes them on the device:
- ``l2``: per-pixel squared error averaged over channels (the starting configuration);
- ``ssim``: 1 − SSIM with a Gaussian window (Wang et al., IEEE TIP 2004), which sees structure
  rather than brightness and so catches low-contrast defects that the squared error drowns;
- ``gms``: 1 − multi-scale gradient magnitude similarity (MSGMS, Zavrtanik et al., "Reconstruction
  by inpainting for visual anomaly detection", Pattern Recognition 2021), sensitive to thin edges
  such as scratches and cracks;
- ``ssim+gms``: the mean of the two;
- ``head``: the per-pixel probability of the discriminative head (``models.head``);
- ``head+ssim+gms``: the head's probability and the SSIM+MSGMS map, each divided by its own
  high quantile on normal images (``AnomalyDetector.map_scales``, set by calibration), averaged.
  The head learns what synthetic defects look like and the reconstruction error sees any change;
  on real data each misses what the other finds (BENCHMARKS.md §2), and the normalisation puts
  both in the same unit — "times its normal high end" — so that neither drowns the other. A
  detector with a texture memory (``models.texture_memory``) adds its distance map as a third,
  capped part of the pixel map (``AnomalyDetector.forward``).
A Gaussian smoothing removes single-pixel noise; the image score is the maximum of the map or the
mean of its top-k fraction. With ``test_time_flips`` the detector averages the map over flipped
views of each image (``models.flips``).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.flips import FLIPS

RECONSTRUCTION_MAPS = ("l2", "ssim", "gms", "ssim+gms")
FUSED_MAP = "head+ssim+gms"
HEAD_MAPS = ("head", FUSED_MAP)  # the maps that need a discriminative head
ANOMALY_MAPS = (*RECONSTRUCTION_MAPS, *HEAD_MAPS)
SCORE_REDUCTIONS = ("max", "topk")


@dataclass(frozen=True)
class ScoringConfig:
    """How reconstructions become maps and scores; stored in the checkpoint."""

    anomaly_map: str = "ssim+gms"  # one of ANOMALY_MAPS
    smoothing_sigma: float = 2.0  # Gaussian σ in model pixels; 0 disables
    score_reduction: str = "max"  # "max" or "topk" (mean of the top-k fraction of the map)
    topk_fraction: float = 0.01
    ssim_window: int = 11
    gms_scales: int = 4
    # Flipped views the map is averaged over, besides the image itself ("h", "v", "hv"): only
    # flips the model was trained with (``TrainConfig.augment``), since any other view is foreign.
    test_time_flips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.test_time_flips, str):  # tuple("hv") would silently read as ("h", "v")
            raise ValueError(
                f"ScoringConfig.test_time_flips is a sequence of names, got {self.test_time_flips!r}"
            )
        object.__setattr__(self, "test_time_flips", tuple(self.test_time_flips))  # JSON gives a list
        if self.anomaly_map not in ANOMALY_MAPS:
            raise ValueError(
                f"ScoringConfig.anomaly_map must be one of {ANOMALY_MAPS}, got {self.anomaly_map!r}"
            )
        if self.score_reduction not in SCORE_REDUCTIONS:
            raise ValueError(
                f"ScoringConfig.score_reduction must be one of {SCORE_REDUCTIONS}, got {self.score_reduction!r}"
            )
        if self.smoothing_sigma < 0:
            raise ValueError(f"ScoringConfig.smoothing_sigma must be >= 0, got {self.smoothing_sigma}")
        if not 0 < self.topk_fraction <= 1:
            raise ValueError(f"ScoringConfig.topk_fraction must be in (0, 1], got {self.topk_fraction}")
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise ValueError(f"ScoringConfig.ssim_window must be odd and >= 3, got {self.ssim_window}")
        if self.gms_scales < 1:
            raise ValueError(f"ScoringConfig.gms_scales must be >= 1, got {self.gms_scales}")
        unknown = [name for name in self.test_time_flips if name not in FLIPS]
        if unknown or len(set(self.test_time_flips)) != len(self.test_time_flips):
            raise ValueError(
                f"ScoringConfig.test_time_flips must be distinct names of {tuple(FLIPS)}, "
                f"got {self.test_time_flips}"
            )

    @classmethod
    def starting(cls) -> "ScoringConfig":
        """The starting configuration: raw per-pixel squared RGB error, maximum as the score."""
        return cls(anomaly_map="l2", smoothing_sigma=0.0, score_reduction="max")


def gaussian_kernel1d(sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding; σ = 0 returns x."""
    if sigma <= 0:
        return x
    kernel = gaussian_kernel1d(sigma, x.device, x.dtype)
    c = x.shape[1]
    r = kernel.numel() // 2
    # Reflect padding needs r < size; clamp it so tiny maps still work (replicate beyond that).
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (r, r, 0, 0), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode=mode)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def l2_map(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) pair → (B, H, W) squared error averaged over channels."""
    return (image - reconstruction).pow(2).mean(dim=1)


def ssim_map(image: torch.Tensor, reconstruction: torch.Tensor, window: int = 11) -> torch.Tensor:
    """(B, C, H, W) pair → (B, H, W) dissimilarity 1 − SSIM, averaged over channels, in [0, 2]."""
    sigma = 1.5 * window / 11
    c1, c2 = 0.01**2, 0.03**2  # for data in [0, 1]
    blur = lambda t: gaussian_blur(t, sigma)  # noqa: E731
    mu_x, mu_y = blur(image), blur(reconstruction)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(reconstruction * reconstruction) - mu_y**2
    cov = blur(image * reconstruction) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return (1 - ssim).mean(dim=1)


def ssim_loss(image: torch.Tensor, reconstruction: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Mean 1 − SSIM over a batch: a training loss."""
    return ssim_map(image, reconstruction, window).mean()


def _gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Prewitt gradient magnitude of (B, 1, H, W)."""
    kx = torch.tensor([[1.0, 0, -1], [1, 0, -1], [1, 0, -1]], device=x.device, dtype=x.dtype) / 3
    kernels = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)
    return torch.sqrt(g.pow(2).sum(dim=1, keepdim=True) + 1e-12)


def gms_map(image: torch.Tensor, reconstruction: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """(B, C, H, W) pair → (B, H, W) multi-scale gradient magnitude dissimilarity in [0, 1]."""
    c = 0.0026  # stability constant of the GMS paper (Xue et al., IEEE TIP 2014), for [0, 1] data
    x = image.mean(dim=1, keepdim=True)
    y = reconstruction.mean(dim=1, keepdim=True)
    size = image.shape[-2:]
    total = torch.zeros_like(x)
    for scale in range(scales):
        if scale:
            x, y = F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(y, 2, ceil_mode=True)
        gx, gy = _gradient_magnitude(x), _gradient_magnitude(y)
        gms = (2 * gx * gy + c) / (gx**2 + gy**2 + c)
        total = total + F.interpolate(1 - gms, size=size, mode="bilinear", align_corners=False)
    return (total / scales)[:, 0]


def anomaly_map(
    image: torch.Tensor, reconstruction: torch.Tensor, config: ScoringConfig, smoothing: bool = True
) -> torch.Tensor:
    """(B, C, H, W) image and reconstruction → (B, H, W) anomaly map, smoothed as configured."""
    amap = reconstruction_map(image, reconstruction, config.anomaly_map, config)
    return smooth(amap, config.smoothing_sigma) if smoothing else amap


def reconstruction_map(
    image: torch.Tensor, reconstruction: torch.Tensor, kind: str, config: ScoringConfig
) -> torch.Tensor:
    """The unsmoothed reconstruction-error map ``kind`` (one of RECONSTRUCTION_MAPS), (B, H, W)."""
    if kind == "l2":
        return l2_map(image, reconstruction)
    if kind == "ssim":
        return ssim_map(image, reconstruction, config.ssim_window)
    if kind == "gms":
        return gms_map(image, reconstruction, config.gms_scales)
    if kind == "ssim+gms":
        return 0.5 * (
            ssim_map(image, reconstruction, config.ssim_window)
            + gms_map(image, reconstruction, config.gms_scales)
        )
    raise ValueError(f"anomaly map {kind!r} is not computed from a reconstruction alone")


def smooth(amap: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of a (B, H, W) map."""
    return gaussian_blur(amap[:, None], sigma)[:, 0]


def image_score(amap: torch.Tensor, config: ScoringConfig) -> torch.Tensor:
    """(B, H, W) anomaly map → (B,) image score: the maximum, or the mean of the top-k fraction."""
    flat = amap.flatten(1)
    if config.score_reduction == "max":
        return flat.amax(dim=1)
    k = max(1, round(config.topk_fraction * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


def defect_mask(amap: torch.Tensor, pixel_threshold: float) -> torch.Tensor:
    """Binary defect mask: where the anomaly map exceeds the calibrated pixel threshold."""
    return amap > pixel_threshold
