"""Self-Supervised Predictive Convolutional Attentive Block (SSPCAB).

Ristea et al., "Self-Supervised Predictive Convolutional Attentive Block for Anomaly Detection",
CVPR 2022, arXiv 2111.09099. A masked convolution sees four ``kernel_dim``×``kernel_dim``
sub-kernels at the corners of a ``(2·kernel_dim + 2·dilation + 1)``² window whose centre it never
sees; the four responses are summed, passed through a ReLU and re-weighted by squeeze-and-excitation
channel attention. Trained to reproduce its own input (``self_supervised_loss``), the block has to
predict the hidden centre from its context, which is what makes reconstructions of anomalies worse.
The layout follows the authors' reference implementation, so their weights map one to one.
"""

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel attention of Hu et al. (CVPR 2018), as SSPCAB uses it.

    Args:
        channels: feature channels in and out.
        reduction_ratio: the hidden layer has ``channels // reduction_ratio`` units (at least 1).
    """

    def __init__(self, channels: int, reduction_ratio: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction_ratio)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = x.mean(dim=(2, 3))  # (B, C)
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(weights))))
        return x * weights[:, :, None, None]  # (B, C, H, W)


class SSPCAB(nn.Module):
    """Masked convolution with a hidden centre, then channel attention; output shape = input shape.

    Args:
        channels: feature channels in and out.
        kernel_dim: side k' of each of the four corner sub-kernels.
        dilation: distance d between the sub-kernels and the hidden centre.
        reduction_ratio: squeeze-and-excitation reduction r.
    """

    def __init__(
        self, channels: int, kernel_dim: int = 1, dilation: int = 1, reduction_ratio: int = 8
    ) -> None:
        super().__init__()
        for name, value in (
            ("channels", channels),
            ("kernel_dim", kernel_dim),
            ("dilation", dilation),
            ("reduction_ratio", reduction_ratio),
        ):
            if value < 1:
                raise ValueError(f"SSPCAB {name} must be >= 1, got {value}")
        self.kernel_dim = kernel_dim
        self.dilation = dilation
        self.pad = kernel_dim + dilation
        # Each sub-kernel reads a slice of the padded input shifted by this much, so that the
        # four together cover the corners of the window and never its centre.
        self.border = kernel_dim + 2 * dilation + 1
        self.conv1 = nn.Conv2d(channels, channels, kernel_dim)
        self.conv2 = nn.Conv2d(channels, channels, kernel_dim)
        self.conv3 = nn.Conv2d(channels, channels, kernel_dim)
        self.conv4 = nn.Conv2d(channels, channels, kernel_dim)
        self.se = SqueezeExcitation(channels, reduction_ratio)

    def masked_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The centre-blind convolution and its ReLU, before attention: (B, C, H, W) → same."""
        b = self.border
        x = F.pad(x, (self.pad,) * 4)  # (B, C, H + 2p, W + 2p)
        top_left = self.conv1(x[:, :, :-b, :-b])
        bottom_left = self.conv2(x[:, :, b:, :-b])
        top_right = self.conv3(x[:, :, :-b, b:])
        bottom_right = self.conv4(x[:, :, b:, b:])
        return F.relu(top_left + bottom_left + top_right + bottom_right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.masked_conv(x))  # (B, C, H, W)


def self_supervised_loss(block_input: torch.Tensor, block_output: torch.Tensor) -> torch.Tensor:
    """SSPCAB's own loss: the mean squared error between the block's input and its output."""
    return F.mse_loss(block_output, block_input)
