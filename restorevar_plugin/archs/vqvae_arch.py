"""VAR's multi-scale VQVAE tokenizer (``vae_ch160v4096z32.pth`` and RestoreVAR's ``vae_restorevar.ckpt``).

``MultiScaleVQVAE`` has the official module tree and parameter names (``encoder.*``, ``decoder.*``,
``quantize.*``, ``quant_conv.*``, ``post_quant_conv.*``; 324 state-dict keys and 108,948,355 parameters in
the default configuration), so the public flat checkpoints load with ``strict=True``.

Data flow: image ``(B, 3, H, W)`` in [-1, 1] -> ``encoder`` -> ``(B, z, H/16, W/16)`` features (RestoreVAR's
condition) -> ``quant_conv`` -> continuous latent ``f`` -> multi-scale residual quantization (see
:mod:`restorevar_plugin.archs.layers.multiscale_quantizer`) -> token indices per scale / discrete ``f_hat``
-> ``post_quant_conv`` -> ``decoder`` -> image in [-1, 1].
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from .layers.multiscale_quantizer import MultiScaleQuantizer
from .layers.vqvae_blocks import Decoder, Encoder

IMAGE_CHANNELS = 3


@ARCH_REGISTRY.register()
class MultiScaleVQVAE(nn.Module):
    """Multi-scale residual VQVAE with VAR's layout (VQGAN encoder/decoder + shared-codebook residual VQ).

    Shapes: images ``(B, 3, H, W)`` in [-1, 1] with H, W multiples of ``downsample_factor``; latents
    ``(B, z_channels, h, w)``; quantization needs ``h = w = patch_nums[-1]``; indices are lists over scales of
    LongTensors ``(B, pn * pn)`` (row-major).

    For frozen use call ``eval()`` and run under ``torch.no_grad()``; :meth:`img_to_indices`,
    :meth:`encode_features` and :meth:`decode_latent` then compute nothing beyond their result.

    Args:
        vocab_size (int): Codebook size V.
        z_channels (int): Latent channels C.
        ch (int): Base channels of encoder and decoder.
        ch_mult (Sequence[int]): Channel multiplier per resolution level; the downsample factor is
            ``2 ** (len(ch_mult) - 1)``.
        num_res_blocks (int): ResnetBlocks per encoder level (the decoder has one more per level).
        beta (float): Commitment weight of the VQ loss.
        quant_resi (float): Mixing ratio r of the phi convs, ``phi(h) = (1 - r) h + r conv(h)``.
        share_quant_resi (int): Number of phi convs shared between scales.
        patch_nums (Sequence[int]): Side of each scale's token map, increasing; the last equals the latent
            side (32 for 512-px images with the default downsample factor 16).

    ``TINY_CONFIG`` is a seconds-fast configuration of this class (the dummy configs of diffusers' tests), and
    :meth:`example_inputs` gives valid forward inputs for any configuration; ``tests/test_archs.py`` runs
    every registered arch through them.
    """

    # 16-px images, 8 x 8 latents; shares vocab_size, z_channels and patch_nums with the tiny transformer.
    TINY_CONFIG = {'vocab_size': 64, 'z_channels': 8, 'ch': 32, 'ch_mult': [1, 2], 'num_res_blocks': 1,
                   'patch_nums': [1, 2, 4, 8]}

    def __init__(self,
                 vocab_size=4096,
                 z_channels=32,
                 ch=160,
                 ch_mult=(1, 1, 2, 2, 4),
                 num_res_blocks=2,
                 beta=0.25,
                 quant_resi=0.5,
                 share_quant_resi=4,
                 patch_nums=(1, 2, 3, 4, 6, 9, 13, 18, 24, 32)):
        super().__init__()
        ch_mult = tuple(ch_mult)
        self.vocab_size = vocab_size
        self.z_channels = z_channels
        self.downsample_factor = 2**(len(ch_mult) - 1)
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels, in_channels=IMAGE_CHANNELS)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels, out_channels=IMAGE_CHANNELS)
        self.quantize = MultiScaleQuantizer(vocab_size, z_channels, patch_nums, beta, quant_resi, share_quant_resi)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=3, padding=1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=3, padding=1)
        self.patch_nums = self.quantize.patch_nums

    @property
    def image_size(self):
        """int: Side in pixels of the images whose latent is the last scale's grid.

        ``patch_nums[-1] * downsample_factor``.
        """
        return self.patch_nums[-1] * self.downsample_factor

    def example_inputs(self, batch_size=2, generator=None):
        """``(images,)``: ``(batch_size, 3, image_size, image_size)`` uniform in [-1, 1], for :meth:`forward`."""
        size = self.image_size
        return (torch.rand(batch_size, IMAGE_CHANNELS, size, size, generator=generator) * 2 - 1, )

    def _check_image(self, img):
        factor = self.downsample_factor
        if img.dim() != 4 or img.shape[1] != IMAGE_CHANNELS or img.shape[2] % factor or img.shape[3] % factor:
            raise ValueError(f'img must have shape (B, {IMAGE_CHANNELS}, H, W) with H and W multiples of the '
                             f'downsample factor {factor}, got {tuple(img.shape)}')

    # ------------------------------------------------------------------------------------------- encoding
    def encode_features(self, img):
        """Encoder output before ``quant_conv`` (RestoreVAR's continuous condition).

        Args:
            img (Tensor): ``(B, 3, H, W)`` in [-1, 1].

        Returns:
            Tensor: ``(B, z_channels, H / f, W / f)``, f = ``downsample_factor``.
        """
        self._check_image(img)
        return self.encoder(img)

    def encode_latent(self, img):
        """Continuous latent ``quant_conv(encoder(img))`` (the quantizer's input, the refiner's target).

        Args:
            img (Tensor): ``(B, 3, H, W)`` in [-1, 1].

        Returns:
            Tensor: ``(B, z_channels, H / f, W / f)``.
        """
        return self.quant_conv(self.encode_features(img))

    def img_to_indices(self, img):
        """Ground-truth tokens of an image: ``quantize.latent_to_indices(encode_latent(img))``.

        Args:
            img (Tensor): ``(B, 3, H, W)`` in [-1, 1] with ``H = W = patch_nums[-1] * downsample_factor``.

        Returns:
            list[Tensor]: One LongTensor ``(B, pn * pn)`` per scale.
        """
        return self.quantize.latent_to_indices(self.encode_latent(img))

    # ------------------------------------------------------------------------------------ token side
    # Token-side operations (embedding indices, accumulating f_hat, the teacher-forcing and next-scale inputs,
    # quantization with losses, dead-code restarts) have one name each, on the quantizer: ``vqvae.quantize.*``.
    def swap_scales(self, indices_a, indices_b, k):
        """Indices taking their first ``k`` scales from ``indices_a`` and the rest from ``indices_b``.

        The scale-swap experiment of the paper (Fig. 2 / 9): coarse scales carry global content such as
        the degradation, fine scales the details.

        Args:
            indices_a (list[Tensor]): ``S`` LongTensors ``(B, pn * pn)``.
            indices_b (list[Tensor]): ``S`` LongTensors ``(B, pn * pn)``, same B.
            k (int): Number of scales taken from ``indices_a``, in ``[0, S]``.

        Returns:
            list[Tensor]: ``S`` LongTensors ``(B, pn * pn)``.
        """
        num_scales = len(self.patch_nums)
        self.quantize.check_indices(indices_a, (num_scales, ), 'indices_a')
        self.quantize.check_indices(indices_b, (num_scales, ), 'indices_b')
        if indices_a[0].shape[0] != indices_b[0].shape[0]:
            raise ValueError(f'indices_a and indices_b must have the same batch size, got '
                             f'{indices_a[0].shape[0]} and {indices_b[0].shape[0]}')
        if not 0 <= k <= num_scales:
            raise ValueError(f'k must be in [0, {num_scales}], got {k}')
        return list(indices_a[:k]) + list(indices_b[k:])

    # ------------------------------------------------------------------------------------------- decoding
    def decode_latent(self, f):
        """Image from a (discrete or refined) latent: ``decoder(post_quant_conv(f))`` clamped to [-1, 1].

        Args:
            f (Tensor): ``(B, z_channels, h, w)``.

        Returns:
            Tensor: ``(B, 3, h * f, w * f)`` in [-1, 1], f = ``downsample_factor``.
        """
        if f.dim() != 4 or f.shape[1] != self.z_channels:
            raise ValueError(f'latent must have shape (B, {self.z_channels}, h, w), got {tuple(f.shape)}')
        return self.decoder(self.post_quant_conv(f)).clamp(-1, 1)

    def forward(self, img, decode_continuous=False):
        """Tokenizer-training pass: encode, quantize (straight-through), decode.

        Args:
            img (Tensor): ``(B, 3, H, W)`` in [-1, 1] with ``H = W = patch_nums[-1] * downsample_factor``.
            decode_continuous (bool): Also decode the continuous latent, bypassing the quantizer (the
                hybrid training of HART, Tang et al. 2024).

        Returns:
            tuple[Tensor, dict]: The reconstruction ``(B, 3, H, W)`` (not clamped, so that gradients reach
            every pixel) and the loss dict of :meth:`MultiScaleQuantizer.quantize`; with
            ``decode_continuous`` the dict also holds ``continuous_reconstruction`` ``(B, 3, H, W)``.
        """
        f = self.encode_latent(img)
        f_hat, _, losses = self.quantize.quantize(f)
        if decode_continuous:
            losses['continuous_reconstruction'] = self.decoder(self.post_quant_conv(f))
        return self.decoder(self.post_quant_conv(f_hat)), losses
