"""Tests for models/cae.py: the starting architecture, sizes, SSPCAB placement and its loss."""

import pytest
import torch
from torch import nn

from models.cae import CAE, CAEConfig
from models.sspcab import SSPCAB


def _small(**overrides) -> CAEConfig:
    base = dict(input_size=12, in_channels=3, widths=(4, 8, 8), pools=(2, 3), bottleneck_channels=8)
    return CAEConfig(**{**base, **overrides})


def test_starting_preset_architecture():
    config = CAEConfig.starting()
    assert config.input_size == 126
    assert config.widths == (32, 64, 128)
    assert config.pools == (2, 3)
    assert config.sspcab and not config.batch_norm
    assert config.sspcab_block_index == 2  # after block 3

    model = CAE(config)
    pools = [m.kernel_size for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools == [2, 3]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert [type(m) for m in model.encoder[2]][-1] is SSPCAB
    assert model.encoder[2][-1].conv1.in_channels == 128
    ups = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in ups] == [
        (128, 64, (3, 3), (3, 3)),
        (64, 32, (2, 2), (2, 2)),
    ]

    x = torch.rand(1, 3, 126, 126)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert ((y > 0) & (y < 1)).all()  # sigmoid output


@pytest.mark.parametrize(
    ("input_size", "pools", "widths"),
    [
        (6, (2, 3), (4, 8, 8)),
        (24, (2, 3), (4, 8, 8)),
        (8, (2,), (4, 8)),
        (20, (2, 2), (4, 4, 8)),
        (5, (), (4,)),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_declared_size_round_trips(input_size, pools, widths, channels):
    config = CAEConfig(
        input_size=input_size, in_channels=channels, widths=widths, pools=pools, bottleneck_channels=4
    )
    x = torch.rand(2, channels, input_size, input_size)
    with torch.no_grad():
        assert CAE(config)(x).shape == x.shape


@pytest.mark.parametrize(("input_size", "suggestion"), [(125, 126), (4, 6), (100, 102)])
def test_invalid_input_size_names_it_and_suggests_a_valid_one(input_size, suggestion):
    with pytest.raises(ValueError, match="input_size") as err:
        CAEConfig(input_size=input_size, pools=(2, 3))
    assert f"try {suggestion}" in str(err.value)
    CAEConfig(input_size=suggestion, pools=(2, 3))  # the suggestion is accepted


def test_invalid_arguments_name_the_field():
    with pytest.raises(ValueError, match="pools"):
        CAEConfig(input_size=12, widths=(4, 8, 8), pools=(2,))
    with pytest.raises(ValueError, match="in_channels"):
        _small(in_channels=2)
    with pytest.raises(ValueError, match="sspcab_position"):
        _small(sspcab_position=4)
    with pytest.raises(ValueError, match="sspcab_position"):
        _small(sspcab_position=0)


@pytest.mark.parametrize(("position", "block"), [(1, 0), (2, 1), (3, 2), (-1, 2), (-3, 0)])
def test_sspcab_follows_the_configured_block(position, block):
    model = CAE(_small(sspcab_position=position))
    holders = [i for i, stage in enumerate(model.encoder) if any(isinstance(m, SSPCAB) for m in stage)]
    assert holders == [block]
    stage = list(model.encoder[block])
    sspcab_at = next(i for i, m in enumerate(stage) if isinstance(m, SSPCAB))
    assert isinstance(stage[sspcab_at - 1], nn.Sequential)  # right after the conv block, before the pool
    assert model.sspcab_block().conv1.in_channels == (4, 8, 8)[block]


def test_sspcab_loss_is_zero_without_the_block_and_positive_with_it():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 12, 12)
    without = CAE(_small(sspcab=False))
    assert without.sspcab_block() is None
    _, loss = without.forward_with_loss(x)
    assert loss.item() == 0.0

    with_block = CAE(_small(sspcab=True))
    _, loss = with_block.forward_with_loss(x)
    assert loss.item() > 0
    loss.backward()
    grads = [p.grad.abs().sum() for p in with_block.sspcab_block().parameters()]
    assert sum(grads) > 0  # the loss trains the block


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("sspcab", [False, True])
def test_forward_equals_forward_with_loss(batch_norm, sspcab):
    torch.manual_seed(0)
    model = CAE(_small(batch_norm=batch_norm, sspcab=sspcab)).eval()
    x = torch.rand(3, 3, 12, 12)
    with torch.no_grad():
        recon, _ = model.forward_with_loss(x)
        assert torch.equal(model(x), recon)


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_every_3x3_convolution_pads_as_configured(padding):
    model = CAE(_small(padding=padding))
    modes = [m.padding_mode for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(modes) == 2 * 3 + 1 + 2 * 3 and set(modes) == {padding}  # encoder, bottleneck, decoder


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_a_reflected_edge_looks_like_the_inside_to_the_first_layer(padding):
    """A uniform image: padded with zeros, the first convolution answers otherwise at the edge
    than inside (a dark frame); reflected, the same everywhere."""
    torch.manual_seed(0)
    first = CAE(_small(padding=padding)).encoder[0][0][0]
    with torch.no_grad():
        out = first(torch.full((1, 3, 12, 12), 0.5))  # (1, 4, 12, 12)
    inside = out[..., 6:7, 6:7]
    assert torch.allclose(out, inside.expand_as(out), atol=1e-6) == (padding == "reflect")


def test_invalid_padding_names_the_field_and_reflection_needs_two_pixels():
    with pytest.raises(ValueError, match=r"CAEConfig.padding must be one of \('zeros', 'reflect'\)"):
        _small(padding="circular")
    with pytest.raises(ValueError, match="padding reflect needs a bottleneck of at least 2×2"):
        _small(input_size=6, padding="reflect")  # pools 2 and 3: a 1×1 bottleneck
    assert CAE(_small(padding="reflect"))(torch.rand(1, 3, 12, 12)).shape == (1, 3, 12, 12)  # 2×2
