"""Texture memory: how far each patch's local texture is from the nearest patch of a normal image.

The reconstruction error sees what the autoencoder cannot rebuild, and the head what synthetic
defects look like. Neither sees a region whose texture is plausible pixel by pixel yet unlike any
normal image: a band of different grain or brightness, a worn or streaky area. On magnetic_tile
such regions (`uneven`) are 72 % of the defective pixels and both maps rank them near chance
(BENCHMARKS.md §2). A memory of normal patches queried by nearest neighbour — the memory bank of
PatchCore (Roth et al., CVPR 2022) — ranks them. PatchCore describes a patch with pretrained
ImageNet features, which would need a download; here a patch is described by local statistics
that any texture has: per-channel mean brightness, contrast (standard deviation) and mean
horizontal and vertical gradient magnitude, each over several box windows (Haralick-style
first-order texture statistics at several scales). They cost a few box filters per image.

The memory is data, not weights: a seeded random sample of the training images' patch features,
standardised per feature, stored in the checkpoint beside the weights. A random sample keeps the
density of normal textures; a greedy coreset (PatchCore's choice) picks outliers first and, in the
magnetic_tile exploration that chose this descriptor, ranked defects worse (pixel AUROC 0.58 with
4k and 0.64 with 10k patches, against 0.67–0.68 for random samples of 10k–40k).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TextureConfig:
    """The texture descriptor and the memory's size; stored in the checkpoint."""

    windows: tuple[int, ...] = (5, 11, 21, 41)  # odd box-window sides in model pixels: fine to coarse
    grid: int = 16  # patches per side: the distance map's resolution before it is upsampled
    memory_size: int = 16384  # normal patches remembered
    # In the fused map the distance counts up to this fraction of its normal high quantile, no
    # further: it lifts regions of unusual texture that the other parts miss, but neither outvotes
    # their sharp peaks nor pushes the blurred halo around a small defect over the pixel threshold.
    # Uncapped, on the synthetic demo set that halo took pixel F1-max from 0.72 to 0.43; capped at
    # 2 the F1 stayed but the IoU at the calibrated threshold fell from 0.40 to 0.07; at 0.5 both
    # hold, and tire and magnetic_tile gain the most (BENCHMARKS.md §2).
    fused_cap: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(self.windows))
        if not self.windows or any(w < 1 or w % 2 == 0 for w in self.windows):
            raise ValueError(f"TextureConfig.windows must be odd and >= 1, got {self.windows}")
        if self.grid < 1:
            raise ValueError(f"TextureConfig.grid must be >= 1, got {self.grid}")
        if self.memory_size < 1:
            raise ValueError(f"TextureConfig.memory_size must be >= 1, got {self.memory_size}")
        if not self.fused_cap > 0:
            raise ValueError(f"TextureConfig.fused_cap must be > 0, got {self.fused_cap}")

    def feature_dim(self, channels: int) -> int:
        return len(self.windows) * (channels + 3)


def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a window × window box centred on each pixel; borders average what is inside.

    Separable, a row pass then a column pass: 2·window additions per pixel instead of window²
    (the 41-pixel window cost 80 ms of a 126² RGB image on one CPU thread as one 2-D pool). The
    result is the same: the mean of row means over the valid rows, each over the valid columns.
    """
    r = window // 2
    x = F.avg_pool2d(x, (1, window), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(x, (window, 1), stride=1, padding=(r, 0), count_include_pad=False)


def texture_features(images: torch.Tensor, config: TextureConfig) -> torch.Tensor:
    """(B, C, S, S) images in [0, 1] → (B, D, grid, grid) patch descriptors, D = windows × (C + 3)."""
    x = images.float()
    grey = x.mean(dim=1, keepdim=True)
    dx = F.pad((grey[..., :, 1:] - grey[..., :, :-1]).abs(), (0, 1))
    dy = F.pad((grey[..., 1:, :] - grey[..., :-1, :]).abs(), (0, 0, 0, 1))
    parts = []
    for window in config.windows:
        mean = _box_mean(x, window)
        grey_mean = mean.mean(dim=1, keepdim=True)
        contrast = (_box_mean(grey * grey, window) - grey_mean**2).clamp_min(0).sqrt()
        parts += [mean, contrast, _box_mean(dx, window), _box_mean(dy, window)]
    return F.adaptive_avg_pool2d(torch.cat(parts, dim=1), config.grid)


# Elements of one (queries, memory) distance chunk. On a CPU a 1 MB chunk stays in cache: 4.3 ms
# per 126² image on one thread against 24 ms with 64 MB chunks (16k-patch memory, measured
# 2026-11-27). A GPU wants few, large kernels instead.
CPU_CHUNK_ELEMENTS, DEVICE_CHUNK_ELEMENTS = 2**18, 2**24


def nearest_distance(
    queries: torch.Tensor, memory: torch.Tensor, chunk_elements: int | None = None
) -> torch.Tensor:
    """Euclidean distance from each of (Q, D) queries to its nearest of (N, D) memory rows, (Q,).

    Chunked over the queries so that the (chunk, N) distance matrix stays small whatever the
    batch; float32, since ‖q‖² − 2 q·m + ‖m‖² cancels badly in half precision.
    """
    if chunk_elements is None:
        cpu = queries.device.type == "cpu"
        chunk_elements = CPU_CHUNK_ELEMENTS if cpu else DEVICE_CHUNK_ELEMENTS
    memory = memory.float()
    memory_norm = memory.pow(2).sum(dim=1)  # (N,)
    step = max(1, chunk_elements // memory.shape[0])
    out = []
    for start in range(0, queries.shape[0], step):
        q = queries[start : start + step].float()
        squared = q.pow(2).sum(dim=1, keepdim=True) - 2 * q @ memory.t() + memory_norm
        out.append(squared.amin(dim=1).clamp_min(0).sqrt())
    return torch.cat(out)


class TextureMemory(nn.Module):
    """Normal patch descriptors and the nearest-neighbour distance map of new images.

    Args:
        config: descriptor and memory size.
        channels: C of the images.

    Its buffers are ``memory`` (memory_size, D), standardised descriptors, and ``center`` and
    ``spread`` (D,), the standardisation; ``filled`` says whether ``remember`` has run.
    """

    memory: torch.Tensor
    center: torch.Tensor
    spread: torch.Tensor
    filled: torch.Tensor

    def __init__(self, config: TextureConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        dim = config.feature_dim(channels)
        self.register_buffer("memory", torch.zeros(config.memory_size, dim))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("spread", torch.ones(dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def remember(self, images: torch.Tensor, seed: int = 0, batch_size: int = 64) -> None:
        """Fill the memory from (M, C, S, S) normal images.

        With more patches than places, a seeded random sample; with fewer, every patch once and
        random repeats for the remaining places (a repeat changes no nearest distance, and the
        buffer keeps the shape that the checkpoint expects).
        """
        if images.shape[0] < 1:
            raise ValueError("the texture memory needs at least one normal image")
        device = self.memory.device
        features = torch.cat(
            [
                self._descriptors(images[start : start + batch_size].to(device))
                for start in range(0, images.shape[0], batch_size)
            ]
        )  # (M · grid², D)
        center = features.mean(dim=0)
        spread = features.std(dim=0).clamp_min(1e-6) if features.shape[0] > 1 else torch.ones_like(center)
        generator = torch.Generator().manual_seed(seed)
        size, available = self.config.memory_size, features.shape[0]
        if available >= size:
            rows = torch.randperm(available, generator=generator)[:size]
        else:
            rows = torch.cat(
                [torch.arange(available), torch.randint(available, (size - available,), generator=generator)]
            )
        self.memory.copy_((features[rows.to(device)] - center) / spread)
        self.center.copy_(center)
        self.spread.copy_(spread)
        self.filled.fill_(True)

    def _descriptors(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) → (B · grid², D) raw descriptors, one row per patch."""
        features = texture_features(images, self.config)  # (B, D, g, g)
        return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) images → (B, S, S) distance of each pixel's patch to the nearest normal patch."""
        b, _, h, w = images.shape
        queries = (self._descriptors(images) - self.center) / self.spread
        grid = self.config.grid
        distance = nearest_distance(queries, self.memory).view(b, 1, grid, grid)
        return F.interpolate(distance, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
