"""PatchGAN discriminator (Isola et al. 2017, pix2pix ``NLayerDiscriminator``) for decoder fine-tuning.

The paper (§3.3.2, §4.4) fine-tunes the VQVAE decoder with an adversarial loss from a PatchGAN
discriminator; no official code was released, so this is the pix2pix/taming-transformers layout:

====================  ======================================  =======================
layer                 channels                                stride
====================  ======================================  =======================
conv 4x4 + LeakyReLU  input_nc -> ndf (bias, no norm)         2
n_layers - 1 times    ndf*m_prev -> ndf*m, m = min(2^n, 8)    2
conv 4x4 + norm + LR  ndf*m_prev -> ndf*min(2^n_layers, 8)    1
conv 4x4              -> 1 (bias)                             1
====================  ======================================  =======================

Every convolution has padding 1 and LeakyReLU slope 0.2. Convolutions followed by a BatchNorm have
no bias (the norm's shift replaces it); with ``'instance'`` (not affine, as in pix2pix) or ``'none'``
they keep it. For ``n_layers=3`` each output value sees a 70x70 input patch (the "70x70 PatchGAN");
a 256x256 input gives a 30x30 map of real/fake logits. Weights are initialised explicitly in
:meth:`PatchGANDiscriminator.reset_parameters` as pix2pix and taming do: conv weights N(0, 0.02),
biases 0, BatchNorm weights N(1, 0.02) and biases 0.
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

NORMS = ('batch', 'instance', 'none')


def _norm_layer(norm, channels):
    if norm == 'batch':
        return nn.BatchNorm2d(channels)
    if norm == 'instance':
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


@ARCH_REGISTRY.register()
class PatchGANDiscriminator(nn.Module):
    """Fully convolutional discriminator giving one real/fake logit per overlapping input patch.

    Args:
        input_nc (int): Input channels (3 for RGB).
        ndf (int): Channels of the first convolution.
        n_layers (int): Number of stride-2 convolutions (3: 70x70 receptive field).
        norm (str): ``'batch'`` (pix2pix default) | ``'instance'`` | ``'none'``.

    Shapes:
        input ``(B, input_nc, H, W)`` (any range; [-1, 1] as for the decoder) -> logits ``(B, 1, H', W')``,
        where ``H' = H / 2^n_layers - 2`` when ``H`` is a multiple of ``2^n_layers`` (30 for 256, 6 for 64).

    ``TINY_CONFIG`` is a seconds-fast configuration of this class (the dummy configs of diffusers' tests), and
    :meth:`example_inputs` gives valid forward inputs for any configuration; ``tests/test_archs.py`` runs
    every registered arch through them.
    """

    TINY_CONFIG = {'ndf': 8, 'n_layers': 2}

    def __init__(self, input_nc=3, ndf=64, n_layers=3, norm='batch'):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f'PatchGANDiscriminator: norm must be one of {NORMS}, got {norm!r}')
        if n_layers < 1:
            raise ValueError(f'PatchGANDiscriminator: n_layers must be >= 1, got {n_layers}')
        self.input_nc, self.n_layers = input_nc, n_layers
        use_bias = norm != 'batch'
        layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        channels = ndf
        for index in range(1, n_layers + 1):
            out_channels = ndf * min(2**index, 8)
            stride = 2 if index < n_layers else 1
            layers += [
                nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=use_bias),
                _norm_layer(norm, out_channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self):
        """pix2pix / taming initialisation: conv N(0, 0.02) and zero bias; BatchNorm N(1, 0.02) and zero bias."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def example_inputs(self, batch_size=2, generator=None):
        """``(images,)``: ``(batch_size, input_nc, S, S)`` uniform in [-1, 1], ``S = 8 * 2^n_layers`` (6 x 6 logits)."""
        size = 8 * 2**self.n_layers
        return (torch.rand(batch_size, self.input_nc, size, size, generator=generator) * 2 - 1, )

    def forward(self, x):
        """``(B, input_nc, H, W)`` -> patch logits ``(B, 1, H', W')`` (see the class docstring)."""
        return self.main(x)
