"""The 4-level Restormer U-Net whose decoder takes a prompt at three places: PromptIR's and AWRaCLe's backbone.

Channels for ``dim = d`` and prompt channels ``(p1, p2, p3)`` (official: 48 and (64, 128, 320)):

* encoder levels at d, 2d, 4d, latent at 8d (PixelUnshuffle down-sampling, so H and W must be multiples
  of 8; :meth:`PromptedRestormer.restore` reflect-pads and crops back);
* decoder: ``prompt3`` on the latent -> concat (8d + p3) -> ``noise_level3`` -> ``reduce_noise_level3``
  (4d) -> up -> concat skip (6d) -> ``reduce_chan_level3`` (4d) -> ``decoder_level3`` -> ``prompt2`` ->
  concat (4d + p2) -> ``noise_level2`` -> ``reduce_noise_level2`` (4d) -> up -> concat skip (4d) ->
  ``reduce_chan_level2`` (2d) -> ``decoder_level2`` -> ``prompt1`` -> concat (2d + p1) ->
  ``noise_level1`` -> ``reduce_noise_level1`` (2d) -> up -> concat skip (2d) -> ``decoder_level1`` ->
  ``refinement`` -> ``output`` (3x3 conv) + input image.

The three ``noise_level`` blocks use ``heads[2]`` heads, as officially. Subclasses add ``prompt1..3``
(modules called as ``promptK(features, *prompt_args)`` returning ``(B, pK, h, w)``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .restormer_blocks import (
    Downsample,
    OverlapPatchEmbed,
    TransformerBlock,
    Upsample,
    transformer_stage,
)

SIZE_MULTIPLE = 8


def pad_to_multiple(image, multiple):
    """Reflect-pad ``(B, C, H, W)`` at the bottom and right to multiples of ``multiple`` (replicate when the
    image is too small to reflect). Returns the padded tensor."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return image
    mode = 'reflect' if pad_h < height and pad_w < width else 'replicate'
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


class PromptedRestormer(nn.Module):
    """PromptIR's U-Net without its prompt modules (see the module docstring).

    Args:
        inp_channels (int): Input image channels.
        out_channels (int): Output image channels (equal to ``inp_channels`` for the global residual).
        dim (int): Channels d of level 1.
        num_blocks (list[int]): Transformer blocks of encoder levels 1-3 and of the latent (decoder levels
            1-3 repeat the first three).
        num_refinement_blocks (int): Blocks of ``refinement``.
        heads (list[int]): Heads of levels 1-4.
        ffn_expansion_factor (float): GDFN expansion.
        bias (bool): Biases in the convolutions.
        layer_norm_type (str): ``'WithBias'`` or ``'BiasFree'``.
        decoder (bool): Use the prompts. The official code's forward fails without them (the latent's
            8d channels do not fit ``up4_3``), so ``decoder=False`` builds the layout only.
        prompt_dims (list[int]): Prompt channels (p1, p2, p3).
    """

    def __init__(self, inp_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads,
                 ffn_expansion_factor, bias, layer_norm_type, decoder, prompt_dims):
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4 or len(prompt_dims) != 3:
            raise ValueError(f'{type(self).__name__}: num_blocks and heads need 4 entries and prompt_dims 3; got '
                             f'{list(num_blocks)}, {list(heads)}, {list(prompt_dims)}')
        p1, p2, p3 = prompt_dims
        d = dim
        self.decoder = decoder

        def stage(count, channels, num_heads):
            return transformer_stage(count, channels, num_heads, ffn_expansion_factor, bias, layer_norm_type)

        def block(channels):
            return TransformerBlock(channels, heads[2], ffn_expansion_factor, bias, layer_norm_type)

        def conv1x1(in_channels, channels):
            return nn.Conv2d(in_channels, channels, kernel_size=1, bias=bias)

        self.patch_embed = OverlapPatchEmbed(inp_channels, d)
        self.encoder_level1 = stage(num_blocks[0], d, heads[0])
        self.down1_2 = Downsample(d)
        self.encoder_level2 = stage(num_blocks[1], 2 * d, heads[1])
        self.down2_3 = Downsample(2 * d)
        self.encoder_level3 = stage(num_blocks[2], 4 * d, heads[2])
        self.down3_4 = Downsample(4 * d)
        self.latent = stage(num_blocks[3], 8 * d, heads[3])
        self.up4_3 = Upsample(4 * d)
        self.reduce_chan_level3 = conv1x1(6 * d, 4 * d)
        self.noise_level3 = block(8 * d + p3)
        self.reduce_noise_level3 = conv1x1(8 * d + p3, 4 * d)
        self.decoder_level3 = stage(num_blocks[2], 4 * d, heads[2])
        self.up3_2 = Upsample(4 * d)
        self.reduce_chan_level2 = conv1x1(4 * d, 2 * d)
        self.noise_level2 = block(4 * d + p2)
        self.reduce_noise_level2 = conv1x1(4 * d + p2, 4 * d)
        self.decoder_level2 = stage(num_blocks[1], 2 * d, heads[1])
        self.up2_1 = Upsample(2 * d)
        self.noise_level1 = block(2 * d + p1)
        self.reduce_noise_level1 = conv1x1(2 * d + p1, 2 * d)
        self.decoder_level1 = stage(num_blocks[0], 2 * d, heads[0])
        self.refinement = stage(num_refinement_blocks, 2 * d, heads[0])
        self.output = nn.Conv2d(2 * d, out_channels, kernel_size=3, padding=1, bias=bias)

    def _prompted(self, features, prompt, noise_level, reduce, prompt_args):
        return reduce(noise_level(torch.cat([features, prompt(features, *prompt_args)], 1)))

    def restore(self, image, *prompt_args):
        """The U-Net on ``image`` ``(B, C, H, W)`` (any H, W: padded to multiples of 8 inside and cropped back).

        Returns:
            Tensor: ``(B, out_channels, H, W)``, ``output(...) + image`` (not clamped).
        """
        if not self.decoder:
            raise RuntimeError(f'{type(self).__name__}(decoder=False) has no forward: as in the official code, '
                               'the decoder needs the prompts (use decoder=True)')
        height, width = image.shape[-2:]
        padded = pad_to_multiple(image, SIZE_MULTIPLE)
        enc1 = self.encoder_level1(self.patch_embed(padded))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        latent = self._prompted(latent, self.prompt3, self.noise_level3, self.reduce_noise_level3, prompt_args)
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec3 = self._prompted(dec3, self.prompt2, self.noise_level2, self.reduce_noise_level2, prompt_args)
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec2 = self._prompted(dec2, self.prompt1, self.noise_level1, self.reduce_noise_level1, prompt_args)
        dec1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1)))
        return (self.output(dec1) + padded)[..., :height, :width]
