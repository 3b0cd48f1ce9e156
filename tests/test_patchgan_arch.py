"""PatchGANDiscriminator: pix2pix layout (shapes, receptive field, parameter count), init, gradients, GANLoss."""
import pytest
import torch
from basicsr.archs import build_network
from basicsr.losses.gan_loss import GANLoss

from restorevar_plugin.archs.patchgan_arch import PatchGANDiscriminator


def pix2pix_parameter_count(input_nc, ndf, n_layers, batch_norm):
    """Count from the pix2pix NLayerDiscriminator layer table: 4x4 convs, BN convs without bias."""
    channels = [input_nc, ndf] + [ndf * min(2**index, 8) for index in range(1, n_layers + 1)] + [1]
    total = 0
    for index, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
        normalised = 0 < index < len(channels) - 2
        has_bias = not (normalised and batch_norm)
        total += cin * cout * 16 + (cout if has_bias else 0) + (2 * cout if normalised and batch_norm else 0)
    return total


@pytest.mark.parametrize('norm, batch_norm', [('batch', True), ('instance', False), ('none', False)])
def test_parameter_count_matches_pix2pix_layer_table(norm, batch_norm):
    with torch.device('meta'):
        net = PatchGANDiscriminator(norm=norm)
    expected = pix2pix_parameter_count(3, 64, 3, batch_norm)
    assert sum(parameter.numel() for parameter in net.parameters()) == expected
    assert expected == (2_765_633 if batch_norm else 2_764_737)


@pytest.mark.parametrize('size, patches', [(64, 6), (256, 30)])
def test_output_is_a_one_channel_patch_map(size, patches):
    net = PatchGANDiscriminator().eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1, patches, patches)


def test_receptive_field_is_70_pixels():
    net = PatchGANDiscriminator().eval()
    image = torch.randn(1, 3, 256, 256, requires_grad=True)
    net(image)[0, 0, 15, 15].backward()
    rows, cols = torch.nonzero(image.grad.abs().sum(dim=(0, 1))).unbind(1)
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_gradients_reach_every_parameter():
    net = PatchGANDiscriminator(ndf=16).train()
    net(torch.randn(2, 3, 64, 64)).mean().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_initialisation_follows_pix2pix():
    torch.manual_seed(0)
    net = PatchGANDiscriminator()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 5 and len(norms) == 3
    largest = max(convs, key=lambda conv: conv.weight.numel())
    assert largest.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(largest.weight.mean().item()) < 1e-3
    assert all(conv.bias is None or not conv.bias.any() for conv in convs)
    assert [conv.bias is None for conv in convs] == [False, True, True, True, False]
    bn_weights = torch.cat([norm.weight for norm in norms])
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.005)
    assert bn_weights.std().item() == pytest.approx(0.02, rel=0.2)
    assert not torch.cat([norm.bias for norm in norms]).any()


@pytest.mark.parametrize('gan_type', ['vanilla', 'lsgan', 'hinge'])
def test_basicsr_gan_loss_trains_on_the_patch_map(gan_type):
    net = build_network({'type': 'PatchGANDiscriminator', 'ndf': 16, 'norm': 'instance'})
    criterion = GANLoss(gan_type, loss_weight=1.0)
    real, fake = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    d_loss = criterion(net(real), True, is_disc=True) + criterion(net(fake), False, is_disc=True)
    assert d_loss.dim() == 0 and torch.isfinite(d_loss)
    d_loss.backward()
    assert all(parameter.grad is not None for parameter in net.parameters())
    fake.requires_grad_()
    g_loss = criterion(net(fake), True, is_disc=False)
    g_loss.backward()
    assert fake.grad.abs().sum() > 0


def test_rejects_bad_options():
    with pytest.raises(ValueError, match='norm must be one of'):
        PatchGANDiscriminator(norm='group')
    with pytest.raises(ValueError, match='n_layers'):
        PatchGANDiscriminator(n_layers=0)
