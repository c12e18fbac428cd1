"""Convolutional autoencoder (CAE) that reconstructs normal images, with an optional SSPCAB block.

The ``starting`` preset is the architecture this project was specified from: three encoder conv
blocks separated by max-pools of 2 and 3, an SSPCAB after the last block, a 3×3 bottleneck, and a
mirrored decoder of conv blocks and transposed convolutions ending in a sigmoid. The other settings
are the knobs that the project's defaults turn (normalisation, SSPCAB position and shape).
SSPCAB: Ristea et al., CVPR 2022, arXiv 2111.09099.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.sspcab import SSPCAB, self_supervised_loss

# How a 3×3 convolution sees past the edge of its input (``nn.Conv2d``'s ``padding_mode``). Zeros
# show every layer a black frame around the image, so a network's output is least sure at the
# image's edges; a reflection continues the image's own texture there.
PaddingMode = Literal["zeros", "reflect"]
PADDING_MODES: tuple[PaddingMode, ...] = ("zeros", "reflect")


def check_padding(padding: str, owner: str) -> None:
    if padding not in PADDING_MODES:
        raise ValueError(f"{owner}.padding must be one of {PADDING_MODES}, got {padding!r}")


@dataclass(frozen=True)
class CAEConfig:
    """Everything needed to rebuild a CAE; stored in the checkpoint as ``asdict(config)``."""

    input_size: int = 126  # side of the square model input; a multiple of prod(pools)
    in_channels: int = 3  # 3 for RGB, 1 for grayscale
    widths: tuple[int, ...] = (32, 64, 128)  # channels of each encoder conv block
    pools: tuple[int, ...] = (2, 3)  # max-pool factor after each block but the last
    bottleneck_channels: int = 128
    batch_norm: bool = False  # BatchNorm inside conv blocks (keeps dark, low-contrast data alive)
    sspcab: bool = True
    sspcab_position: int = -1  # SSPCAB follows this encoder block (1-based; negative counts from the end)
    sspcab_kernel_dim: int = 1
    sspcab_dilation: int = 1
    sspcab_reduction_ratio: int = 8
    padding: PaddingMode = "zeros"  # of the 3×3 convolutions: one of PADDING_MODES (older checkpoints: zeros)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "pools", tuple(self.pools))
        check_padding(self.padding, "CAEConfig")
        if len(self.pools) != len(self.widths) - 1:
            raise ValueError(
                f"CAEConfig.pools needs one factor per block transition ({len(self.widths) - 1}), "
                f"got {len(self.pools)}"
            )
        stride = math.prod(self.pools)
        if self.input_size < stride or self.input_size % stride:
            raise ValueError(
                f"CAEConfig.input_size must be a positive multiple of {stride} (the product of "
                f"pools {self.pools}), got {self.input_size}; try {max(1, round(self.input_size / stride)) * stride}"
            )
        if self.padding == "reflect" and self.input_size // stride < 2:
            raise ValueError(
                f"CAEConfig.padding reflect needs a bottleneck of at least 2×2 pixels to reflect, got "
                f"{self.input_size // stride}×{self.input_size // stride} (input_size {self.input_size}, pools {self.pools})"
            )
        if self.in_channels not in (1, 3):
            raise ValueError(f"CAEConfig.in_channels must be 1 or 3, got {self.in_channels}")
        n = len(self.widths)
        if not (1 <= self.sspcab_position <= n or -n <= self.sspcab_position <= -1):
            raise ValueError(
                f"CAEConfig.sspcab_position must be in 1..{n} or -{n}..-1, got {self.sspcab_position}"
            )

    @property
    def sspcab_block_index(self) -> int:
        """0-based index of the encoder block that SSPCAB follows."""
        return (
            self.sspcab_position % len(self.widths) if self.sspcab_position < 0 else self.sspcab_position - 1
        )

    @classmethod
    def starting(cls, **overrides) -> "CAEConfig":
        """The configuration this project was specified from (126², no BatchNorm, SSPCAB after block 3)."""
        return cls(**{"input_size": 126, "batch_norm": False, "sspcab": True, **overrides})


def conv_block(c_in: int, c_out: int, batch_norm: bool, padding: PaddingMode = "zeros") -> nn.Sequential:
    """Two 3×3 convolutions (padding 1 of ``padding``'s mode), each followed by (BatchNorm and) ReLU."""
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batch_norm, padding_mode=padding))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class CAE(nn.Module):
    """Convolutional autoencoder; ``forward`` maps (B, C, S, S) in [0, 1] to a reconstruction of the same shape.

    Args:
        config: the architecture; ``config.input_size`` is the only size it accepts.
    """

    def __init__(self, config: CAEConfig) -> None:
        super().__init__()
        self.config = config
        bn, pad = config.batch_norm, config.padding
        widths = config.widths
        self.encoder = nn.ModuleList()
        c_in = config.in_channels
        for i, width in enumerate(widths):
            stage: list[nn.Module] = [conv_block(c_in, width, bn, pad)]
            if i == config.sspcab_block_index and config.sspcab:
                stage.append(
                    SSPCAB(
                        width,
                        config.sspcab_kernel_dim,
                        config.sspcab_dilation,
                        config.sspcab_reduction_ratio,
                    )
                )
            if i < len(config.pools):
                stage.append(nn.MaxPool2d(config.pools[i]))
            self.encoder.append(nn.Sequential(*stage))
            c_in = width
        self.bottleneck = nn.Sequential(
            nn.Conv2d(widths[-1], config.bottleneck_channels, 3, padding=1, padding_mode=pad),
            nn.ReLU(inplace=True),
        )
        decoder: list[nn.Module] = [conv_block(config.bottleneck_channels, widths[-1], bn, pad)]
        for width, up, pool in zip(widths[-2::-1], widths[:0:-1], config.pools[::-1], strict=True):
            decoder.append(nn.ConvTranspose2d(up, width, pool, stride=pool))
            decoder.append(conv_block(width, width, bn, pad))
        decoder.append(nn.Conv2d(widths[0], config.in_channels, 1))  # projection to image channels
        self.decoder = nn.Sequential(*decoder)

    def sspcab_block(self) -> SSPCAB | None:
        for module in self.modules():
            if isinstance(module, SSPCAB):
                return module
        return None

    def forward_with_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (B, C, S, S) and SSPCAB's self-supervised loss (a scalar; 0 without SSPCAB)."""
        sspcab_loss = x.new_zeros(())
        h = x
        for stage in self.encoder:
            for layer in stage.children():
                if isinstance(layer, SSPCAB):
                    out = layer(h)
                    sspcab_loss = self_supervised_loss(h, out)
                    h = out
                else:
                    h = layer(h)
        h = self.bottleneck(h)  # (B, C', S / prod(pools), S / prod(pools))
        return torch.sigmoid(self.decoder(h)), sspcab_loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for stage in self.encoder:
            h = stage(h)
        return torch.sigmoid(self.decoder(self.bottleneck(h)))  # (B, C, S, S)
