"""PromptIR (Potlapalli et al., "PromptIR: Prompting for All-in-One Blind Image Restoration", NeurIPS 2023).

The official network of va1shn9v/PromptIR (``net/model.py``, class ``PromptIR``) with its parameter
names and shapes: 548 state-dict keys; 35,592,263 parameters with ``decoder=True`` (the paper's
35.59M), 32,107,288 with ``decoder=False``. Official checkpoint: ``model.ckpt`` (GitHub release v1.0 of
va1shn9v/PromptIR), a Lightning checkpoint whose keys carry a ``net.`` prefix; it loads strictly through
:func:`restorevar_plugin.checkpoints.load_state_dict`.
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from .layers.prompt_blocks import PromptGenBlock
from .layers.prompted_restormer import PromptedRestormer

# Channels of the official (never used) ``chnl_reduce3`` output, also the extra input of ``reduce_noise_channel_3``.
UNUSED_REDUCE3_CHANNELS = 256

TINY_CONFIG = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2],
                   prompt_dims=[8, 8, 16], prompt_sizes=[8, 4, 2], official_unused_layers=False)
"""A PromptIR small enough for CPU tests (277,948 parameters); every parameter is used in forward."""


@ARCH_REGISTRY.register()
class PromptIR(PromptedRestormer):
    """PromptIR: a Restormer U-Net whose decoder concatenates learned prompts at three levels.

    ``prompt1..3`` are :class:`~restorevar_plugin.archs.layers.prompt_blocks.PromptGenBlock` of
    ``prompt_len`` components with (channels, side) = (64, 64), (128, 32), (320, 16) officially, reading the
    decoder features of 2d, 4d and 8d channels (96, 192, 384). Backbone: see
    :mod:`restorevar_plugin.archs.layers.prompted_restormer`.

    The official network also builds six layers its forward never uses, ``chnl_reduce1/2/3`` and
    ``reduce_noise_channel_1/2/3`` (215,296 parameters at the official size). They are kept
    (``official_unused_layers=True``, the default) so that official checkpoints load strictly and the
    parameter count equals the paper's; they receive no gradient (DDP needs
    ``find_unused_parameters: true``, as the official training sets).

    Args:
        inp_channels (int): Input channels. Default: 3.
        out_channels (int): Output channels. Default: 3.
        dim (int): Level-1 channels d. Default: 48.
        num_blocks (list[int]): Blocks of levels 1-4. Default: [4, 6, 6, 8].
        num_refinement_blocks (int): Refinement blocks. Default: 4.
        heads (list[int]): Heads of levels 1-4. Default: [1, 2, 4, 8].
        ffn_expansion_factor (float): GDFN expansion. Default: 2.66.
        bias (bool): Convolution biases. Default: False.
        layer_norm_type (str): ``'WithBias'`` or ``'BiasFree'``. Default: ``'WithBias'``.
        decoder (bool): Build and use the prompts (the official training uses True; the official
            forward cannot run without them). Default: True.
        prompt_dims (list[int]): Prompt channels. Default: [64, 128, 320].
        prompt_sizes (list[int]): Side of the learned prompt components. Default: [64, 32, 16].
        prompt_len (int): Prompt components per block. Default: 5.
        official_unused_layers (bool): Build the six unused layers. Default: True.

    Shapes: ``forward(image)``: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, H, W)`` (not clamped), any H and W
    (reflect-padded to multiples of 8 inside, cropped back).
    """

    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4,
                 heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, bias=False, layer_norm_type='WithBias', decoder=True,
                 prompt_dims=(64, 128, 320), prompt_sizes=(64, 32, 16), prompt_len=5, official_unused_layers=True):
        super().__init__(inp_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads,
                         ffn_expansion_factor, bias, layer_norm_type, decoder, prompt_dims)
        p1, p2, p3 = prompt_dims
        if decoder:
            self.prompt1 = PromptGenBlock(p1, prompt_len, prompt_sizes[0], 2 * dim)
            self.prompt2 = PromptGenBlock(p2, prompt_len, prompt_sizes[1], 4 * dim)
            self.prompt3 = PromptGenBlock(p3, prompt_len, prompt_sizes[2], 8 * dim)
        if official_unused_layers:
            self.chnl_reduce1 = nn.Conv2d(p1, p1, kernel_size=1, bias=bias)
            self.chnl_reduce2 = nn.Conv2d(p2, p2, kernel_size=1, bias=bias)
            self.chnl_reduce3 = nn.Conv2d(p3, UNUSED_REDUCE3_CHANNELS, kernel_size=1, bias=bias)
            self.reduce_noise_channel_1 = nn.Conv2d(dim + p1, dim, kernel_size=1, bias=bias)
            self.reduce_noise_channel_2 = nn.Conv2d(2 * dim + p2, 2 * dim, kernel_size=1, bias=bias)
            self.reduce_noise_channel_3 = nn.Conv2d(4 * dim + UNUSED_REDUCE3_CHANNELS, 4 * dim, kernel_size=1,
                                                    bias=bias)

    TINY_CONFIG = TINY_CONFIG

    def example_inputs(self, batch_size=2, generator=None):
        """``(image,)``: ``(batch_size, 3, 16, 16)`` uniform in [0, 1] (16 is a multiple of the U-Net's 8)."""
        return (torch.rand(batch_size, 3, 16, 16, generator=generator), )

    def forward(self, image):
        return self.restore(image)
