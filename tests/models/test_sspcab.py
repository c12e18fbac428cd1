"""Tests for models/sspcab.py: shapes, the hidden centre of the masked convolution, arguments, loss."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from models.sspcab import SSPCAB, SqueezeExcitation, self_supervised_loss


@pytest.mark.parametrize("shape", [(2, 8, 9, 9), (1, 8, 8, 8), (3, 8, 7, 12), (1, 8, 10, 5)])
@pytest.mark.parametrize(("kernel_dim", "dilation"), [(1, 1), (2, 3)])
def test_output_shape_equals_input_shape(shape, kernel_dim, dilation):
    block = SSPCAB(shape[1], kernel_dim=kernel_dim, dilation=dilation)
    x = torch.rand(shape)
    assert block(x).shape == shape
    assert block.masked_conv(x).shape == shape


def _receptive_field(i: int, j: int, kernel_dim: int, dilation: int) -> set[tuple[int, int]]:
    """The four kernel_dim² corner squares of the (2k + 2d + 1)² window centred on (i, j)."""
    near = range(dilation + 1, dilation + kernel_dim + 1)  # offsets d+1 .. d+k from the centre
    offsets = [-o for o in near] + list(near)
    return {(i + di, j + dj) for di in offsets for dj in offsets}


@pytest.mark.parametrize(("kernel_dim", "dilation"), [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_masked_convolution_never_sees_its_centre(kernel_dim, dilation):
    torch.manual_seed(0)
    channels, size = 3, 17
    block = SSPCAB(channels, kernel_dim=kernel_dim, dilation=dilation)
    with torch.no_grad():  # positive weights and inputs keep the ReLU open, so every seen pixel counts
        for conv in (block.conv1, block.conv2, block.conv3, block.conv4):
            conv.weight.uniform_(0.1, 1.0)
            conv.bias.zero_()
    i, j = 8, 8
    x = (torch.rand(1, channels, size, size) + 0.1).requires_grad_()
    block.masked_conv(x)[0, :, i, j].sum().backward()
    seen = x.grad[0].abs().sum(dim=0)  # (H, W)

    assert seen[i, j].item() == 0.0  # exactly: the centre is not in the receptive field
    field = _receptive_field(i, j, kernel_dim, dilation)
    assert len(field) == 4 * kernel_dim**2
    for r, c in field:
        assert seen[r, c] > 0, (r, c)
    nonzero = {(r, c) for r, c in torch.nonzero(seen).tolist()}
    assert nonzero == field


def test_centre_blindness_holds_at_the_border():
    torch.manual_seed(1)
    block = SSPCAB(2, kernel_dim=2, dilation=1)
    x = torch.rand(1, 2, 6, 6, requires_grad=True)
    block.masked_conv(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, :, 0, 0].abs().sum().item() == 0.0


def test_defaults_follow_the_paper():
    params = inspect.signature(SSPCAB).parameters
    assert params["kernel_dim"].default == 1
    assert params["dilation"].default == 1
    assert params["reduction_ratio"].default == 8
    block = SSPCAB(32)
    assert block.conv1.kernel_size == (1, 1)
    assert block.se.fc1.out_features == 32 // 8
    assert len(_receptive_field(0, 0, 1, 1)) == 4


def test_squeeze_excitation_keeps_at_least_one_hidden_unit():
    assert SqueezeExcitation(4, reduction_ratio=8).fc1.out_features == 1


@pytest.mark.parametrize("name", ["channels", "kernel_dim", "dilation", "reduction_ratio"])
@pytest.mark.parametrize("value", [0, -1])
def test_invalid_arguments_name_the_argument(name, value):
    kwargs = {"channels": 8, "kernel_dim": 1, "dilation": 1, "reduction_ratio": 8, name: value}
    with pytest.raises(ValueError, match=name):
        SSPCAB(**kwargs)


def test_self_supervised_loss_is_the_mean_squared_error():
    block_input = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    block_output = torch.tensor([[[[1.0, 1.0], [0.0, 3.0]]]])
    # squared errors 1, 0, 4, 0 → mean 1.25
    assert self_supervised_loss(block_input, block_output).item() == pytest.approx(1.25)
    x, y = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5)
    assert torch.equal(self_supervised_loss(x, y), F.mse_loss(y, x))
