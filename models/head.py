"""Discriminative head: a compact U-Net that segments anomalies from an image and its reconstruction.

Following DRAEM (Zavrtanik et al., ICCV 2021), whose SSPCAB variant reaches 98.9 image / 97.2 pixel
AUROC on MVTec AD (Ristea et al., CVPR 2022): the reconstruction error alone misses small,
low-contrast defects, so a second network learns *which* differences between an image and its
reconstruction are defects, from synthetic anomalies with exact masks. It sees both images stacked
(2·C channels) and outputs one logit per pixel. SSPCAB sits at its bottleneck, where its centre-blind
prediction helps most.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.cae import PaddingMode, check_padding, conv_block
from models.sspcab import SSPCAB


@dataclass(frozen=True)
class HeadConfig:
    """Architecture of the discriminative head; stored in the checkpoint."""

    widths: tuple[int, ...] = (16, 32, 64, 64)  # channels per U-Net level, top to bottom
    sspcab: bool = True  # SSPCAB at the bottleneck
    batch_norm: bool = True
    # Of the 3×3 convolutions (``models.cae.PADDING_MODES``); older checkpoints: zeros.
    padding: PaddingMode = "zeros"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        check_padding(self.padding, "HeadConfig")
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"HeadConfig.widths needs at least two positive levels, got {self.widths}")


class DiscriminativeHead(nn.Module):
    """U-Net over (image, reconstruction) → per-pixel anomaly logits.

    Args:
        config: the architecture.
        image_channels: C of the images (the head reads 2·C channels).
    """

    def __init__(self, config: HeadConfig, image_channels: int) -> None:
        super().__init__()
        self.config = config
        bn, pad, widths = config.batch_norm, config.padding, config.widths
        self.down = nn.ModuleList()
        c_in = 2 * image_channels
        for width in widths:
            self.down.append(conv_block(c_in, width, bn, pad))
            c_in = width
        self.sspcab = SSPCAB(widths[-1]) if config.sspcab else nn.Identity()
        self.up = nn.ModuleList(
            conv_block(deep + skip, skip, bn, pad)
            for deep, skip in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.out = nn.Conv2d(widths[0], 1, 1)

    def forward(self, image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) image and reconstruction → (B, H, W) logits; any H, W."""
        h = torch.cat([image, reconstruction], dim=1)  # (B, 2C, H, W)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = block(h)
            skips.append(h)
        h = self.sspcab(skips.pop())  # bottleneck, (B, C_last, H / 2^(n-1), W / 2^(n-1))
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return self.out(h)[:, 0]  # (B, H, W)
