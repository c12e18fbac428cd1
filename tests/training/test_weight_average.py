"""Tests for training/weight_average.py: the average's arithmetic, its warm-up and its counters, and
BatchNorm statistics measured anew."""

import pytest
import torch
from torch import nn

from training.weight_average import WeightAverage, refresh_batch_norm


def _model(value: float) -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(value)
    return model


def test_each_update_moves_the_average_by_one_minus_the_decay():
    live = _model(0.0)
    average = WeightAverage(live, decay=0.5)
    with torch.no_grad():
        for tensor in live.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(1.0)
    average.update(live)  # warm-up: decay (1 + 1) / (10 + 1) = 2/11 < 0.5
    average.update(live)  # decay 3/12 = 0.25
    expected = (1 - 2 / 11) * 1.0  # after the first: 9/11 of the way to 1
    expected = expected + (1 - 0.25) * (1.0 - expected)
    for name, tensor in average.model.state_dict().items():
        if tensor.is_floating_point():  # weights and BatchNorm's running statistics alike
            assert torch.allclose(tensor, torch.full_like(tensor, expected)), name


def test_the_decay_warms_up_to_the_asked_value_and_stays():
    average = WeightAverage(_model(0.0), decay=0.9)
    assert average.decay_now() == pytest.approx(2 / 11)
    seen = []
    for _ in range(200):
        seen.append(average.decay_now())
        average.update(_model(0.0))
    assert seen == sorted(seen)
    assert seen[-1] == 0.9


def test_counters_are_copied_not_averaged_and_the_average_does_not_train():
    live = _model(0.0)
    average = WeightAverage(live, decay=0.99)
    live.train()
    for _ in range(3):
        live(torch.rand(4, 2))
    average.update(live)
    assert int(average.model.state_dict()["1.num_batches_tracked"]) == 3
    assert not average.model.training
    assert not any(p.requires_grad for p in average.model.parameters())


def test_the_live_model_is_not_changed():
    live = _model(1.0)
    average = WeightAverage(_model(0.0), decay=0.5)
    average.update(live)
    assert all(torch.all(t == 1.0) for t in live.state_dict().values() if t.is_floating_point())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="--ema-decay"):
        WeightAverage(_model(0.0), decay)


def test_refreshed_batch_norm_statistics_are_the_plain_average_over_the_batches():
    model = _model(0.5).eval()
    norm = model[1]
    batches = [torch.randn(8, 2) * scale + shift for scale, shift in ((1, 0), (2, 3), (0.5, -1))]
    refresh_batch_norm(model, lambda: [model(batch) for batch in batches])
    features = [model[0](batch) for batch in batches]
    expected_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    expected_var = torch.stack([f.var(0) for f in features]).mean(0)  # unbiased, as BatchNorm keeps
    assert torch.allclose(norm.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(norm.running_var, expected_var, atol=1e-5)
    assert norm.momentum == 0.1 and not model.training  # what it was before


def test_refresh_restores_momentum_and_mode_when_the_forward_pass_fails():
    model = _model(0.5).train()

    def failing() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        refresh_batch_norm(model, failing)
    assert model[1].momentum == 0.1 and model.training
