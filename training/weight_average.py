"""An exponential moving average of a model's weights over the optimizer's steps (Polyak averaging;
as timm's ModelEmaV2 and the YOLO trainers keep one).

Why: the discriminative head's map moves a lot from one epoch to the next while the validation loss
hardly does (tire, seed 0: image AUROC 0.804 at epoch 177, 0.657 at epoch 248 of one run), so the
epoch that early stopping keeps is partly luck. The average of the recent steps' weights follows
the same training but not its step-to-step noise; validation, early stopping and the checkpoint
then use the average, and the live weights only train.

BatchNorm's statistics are measured anew for the averaged weights before each use
(``refresh_batch_norm``, as stochastic weight averaging does: Izmailov et al., UAI 2018): averaged
running statistics belong to none of the weights averaged, and a first average that kept them
validated far above the live weights (BENCHMARKS.md §2)."""

import copy
from collections.abc import Callable
from typing import Generic, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


class WeightAverage(Generic[M]):
    """A copy of ``model`` whose weights (and BatchNorm statistics) follow the live ones at
    ``1 − decay`` per step. Early on the decay is lower, ``(1 + n) / (10 + n)`` after n steps, so the
    first steps, far from trained, do not linger in the average."""

    def __init__(self, model: M, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"--ema-decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model: M = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_now(self) -> float:
        """The decay of the next update."""
        return min(self.decay, (1 + self.steps + 1) / (10 + self.steps + 1))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.decay_now()
        self.steps += 1
        live = model.state_dict()
        for name, average in self.model.state_dict().items():
            if average.is_floating_point():
                average.lerp_(live[name].to(average.dtype), 1 - decay)
            else:  # counters such as BatchNorm's num_batches_tracked
                average.copy_(live[name])


@torch.no_grad()
def refresh_batch_norm(model: nn.Module, forward: Callable[[], object]) -> None:
    """Replace every BatchNorm layer's running statistics in ``model`` by their plain average over
    the batches that ``forward`` passes through it (in training mode); the model's mode is kept."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches, not an exponential one
    model.train()
    try:
        forward()
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.train(was_training)
