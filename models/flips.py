"""Test-time flip averaging: the anomaly map of an image averaged over its flipped views.

A detector trained with flip augmentation has learned every flip of a normal image as normal, so
each flipped view is a second, independent look at the same image. Where a normal image's map
has a spurious peak (a glint the autoencoder rebuilds badly, a texture the head doubts), the
views rarely agree on it; a real defect is there in every view. Averaging the unflipped maps
therefore lowers the normal peaks more than the defects', which is what ranks images. The views
travel through the model as one batch (``flip_views``), so on a GPU they cost one larger kernel
launch, not several.
"""

from collections.abc import Sequence

import torch

# Flip name → the tensor dimensions it reverses: horizontal, vertical, both (a half turn).
FLIPS: dict[str, tuple[int, ...]] = {"h": (-1,), "v": (-2,), "hv": (-2, -1)}


def flip_views(images: torch.Tensor, flips: Sequence[str]) -> torch.Tensor:
    """(B, C, S, S) → (V · B, C, S, S): the images themselves, then each flip of them, V = 1 + len(flips)."""
    if not flips:
        return images
    return torch.cat([images, *(images.flip(FLIPS[name]) for name in flips)])


def merge_views(maps: torch.Tensor, flips: Sequence[str]) -> torch.Tensor:
    """(V · B, H, W) maps of ``flip_views``'s views → (B, H, W): each flipped back, then averaged."""
    if not flips:
        return maps
    views = maps.chunk(1 + len(flips))
    total = views[0].clone()
    for name, view in zip(flips, views[1:], strict=True):
        total += view.flip(FLIPS[name])
    return total / len(views)
