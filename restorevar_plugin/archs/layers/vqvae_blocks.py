"""Convolutional encoder and decoder of VAR's multi-scale VQVAE (the VQGAN / LDM ``vq-f16`` layout).

Every module keeps the official parameter names (``conv_in``, ``down.{i}.block.{j}.norm1``,
``down.{i}.attn.{j}.qkv``, ``mid.block_1``, ``up.{i}.upsample.conv``, ``nin_shortcut``, ...), so that
``vae_ch160v4096z32.pth`` loads strictly. Normalisation is GroupNorm(32, eps 1e-6, affine), the activation
is SiLU, there is no dropout, and self-attention is single-head and used only at the lowest resolution and
in the middle block.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

GROUP_NORM_GROUPS = 32
GROUP_NORM_EPS = 1e-6


def group_norm(channels):
    """GroupNorm(32 groups, eps 1e-6, affine) over ``channels`` (must be a multiple of 32)."""
    if channels % GROUP_NORM_GROUPS:
        raise ValueError(f'GroupNorm needs channels divisible by {GROUP_NORM_GROUPS}, got {channels} '
                         f'(choose ch and ch_mult so that every ch * ch_mult[i] is a multiple of 32)')
    return nn.GroupNorm(GROUP_NORM_GROUPS, channels, eps=GROUP_NORM_EPS, affine=True)


def conv3x3(in_channels, out_channels, stride=1, padding=1):
    """3x3 convolution with bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=padding)


class ResnetBlock(nn.Module):
    """Pre-activation residual block: ``x + conv2(silu(norm2(conv1(silu(norm1(x))))))``.

    A 1x1 ``nin_shortcut`` projects ``x`` when the channel count changes.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        else:
            self.nin_shortcut = nn.Identity()

    def forward(self, x):
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual: ``x + proj_out(softmax(q k^T / sqrt(C)) v)``.

    q, k and v come from one 1x1 conv ``qkv`` (3C output channels) applied to ``norm(x)``.

    Args:
        channels (int): Channels C.
    """

    def __init__(self, channels):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x):
        """``(B, C, H, W)`` -> ``(B, C, H, W)``; every position attends to all H*W positions."""
        height = x.shape[2]
        q, k, v = rearrange(self.qkv(self.norm(x)), 'b (parts c) h w -> parts b 1 (h w) c', parts=3).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(rearrange(h, 'b 1 (h w) c -> b c h w', h=height))


class Downsample(nn.Module):
    """Halve the resolution: zero-pad right and bottom by 1, then a 3x3 conv with stride 2 and no padding."""

    def __init__(self, channels):
        super().__init__()
        self.conv = conv3x3(channels, channels, stride=2, padding=0)

    def forward(self, x):
        """``(B, C, H, W)`` -> ``(B, C, H/2, W/2)`` for even H, W."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


# Which 3x3 taps of "nearest x2, then 3x3 conv" land on each of the two input rows (or columns) an output pixel
# of row (column) parity 0 or 1 reads: parity 0 reads input rows (i-1, i) with taps (0 | 1 + 2), parity 1 reads
# rows (i, i+1) with taps (0 + 1 | 2).
_PHASE_TAPS = torch.tensor([[[1., 0., 0.], [0., 1., 1.]],
                            [[1., 1., 0.], [0., 0., 1.]]])


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour x2, then a 3x3 conv (``conv``, the official parameters).

    Computed without building the upsampled map: each of the four output phases (row parity a, column
    parity b) of "nearest x2, then 3x3 conv" is a 2x2 conv of the input whose taps are sums of the 3x3 taps
    that read the same input pixel. One 2x2 conv with 4C outputs on the zero-padded input gives all phases:
    16 multiply-adds per output pixel and channel pair instead of 36 (on one CPU thread at 160 channels and
    128 px the layer is 1.6x faster channels-last, 2.1x NCHW), the same values up to summation order (a few
    1e-6 relative). The result is written straight into the interleaved layout, channels-last when the input
    is.
    """

    def __init__(self, channels):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def phase_weights(self):
        """``(4 C, C, 2, 2)`` kernels of the phases ``(a, b)`` in the order (0, 0), (0, 1), (1, 0), (1, 1)."""
        taps = _PHASE_TAPS.to(self.conv.weight)
        kernels = torch.einsum('apr,oirs,bqs->aboipq', taps, self.conv.weight, taps)
        return kernels.flatten(0, 2)

    def forward(self, x):
        """``(B, C, H, W)`` -> ``(B, C, 2H, 2W)``, channels-last when ``x`` is (else contiguous)."""
        batch, channels, height, width = x.shape
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        phases = F.conv2d(F.pad(x, (1, 1, 1, 1)), self.phase_weights(), self.conv.bias.repeat(4))
        phases = phases.unflatten(1, (2, 2, channels))  # (B, a, b, C, H + 1, W + 1)
        # out[:, :, i, a, j, b] is output pixel (2i + a, 2j + b), stored (B, H, 2, W, 2, C) for channels-last.
        if channels_last:
            storage = phases.new_empty(batch, height, 2, width, 2, channels)
            out = storage.permute(0, 5, 1, 2, 3, 4)
        else:
            out = storage = phases.new_empty(batch, channels, height, 2, width, 2)
        for a in (0, 1):
            for b in (0, 1):
                out[:, :, :, a, :, b] = phases[:, a, b, :, a:a + height, b:b + width]
        if channels_last:
            return storage.view(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)
        return storage.view(batch, channels, 2 * height, 2 * width)


class MidBlock(nn.Module):
    """``block_2(attn_1(block_1(x)))`` at the lowest resolution, channels unchanged."""

    def __init__(self, channels):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x):
        """``(B, C, h, w)`` -> ``(B, C, h, w)``."""
        return self.block_2(self.attn_1(self.block_1(x)))


def _residual_stack(in_channels, out_channels, num_blocks):
    """``num_blocks`` ResnetBlocks; the first maps ``in_channels`` to ``out_channels``."""
    channels = [in_channels] + [out_channels] * num_blocks
    return nn.ModuleList(ResnetBlock(cin, cout) for cin, cout in zip(channels, channels[1:]))


class _ResidualLevel(nn.Module):
    """ResnetBlocks (``block.{i}``), each followed by an AttnBlock (``attn.{i}``) when ``use_attn``.

    Args:
        in_channels (int): Channels entering the level.
        out_channels (int): Channels of every block of the level.
        num_blocks (int): ResnetBlocks in the level.
        use_attn (bool): Attention after every block (the lowest resolution only).
    """

    def __init__(self, in_channels, out_channels, num_blocks, use_attn):
        super().__init__()
        self.block = _residual_stack(in_channels, out_channels, num_blocks)
        self.attn = nn.ModuleList(AttnBlock(out_channels) for _ in range(num_blocks if use_attn else 0))

    def run_blocks(self, x):
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``."""
        for index, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[index](x)
        return x


class EncoderLevel(_ResidualLevel):
    """One encoder resolution: the residual blocks, then a Downsample (every level but the last)."""

    def __init__(self, in_channels, out_channels, num_blocks, use_attn, downsample):
        super().__init__(in_channels, out_channels, num_blocks, use_attn)
        self.downsample = Downsample(out_channels) if downsample else nn.Identity()

    def forward(self, x):
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H/2 or H, W/2 or W)``."""
        return self.downsample(self.run_blocks(x))


class DecoderLevel(_ResidualLevel):
    """One decoder resolution: the residual blocks, then an Upsample (every level but the first)."""

    def __init__(self, in_channels, out_channels, num_blocks, use_attn, upsample):
        super().__init__(in_channels, out_channels, num_blocks, use_attn)
        self.upsample = Upsample(out_channels) if upsample else nn.Identity()

    def forward(self, x):
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, 2H or H, 2W or W)``."""
        return self.upsample(self.run_blocks(x))


class Encoder(nn.Module):
    """Image to continuous latent, downsampling by ``2 ** (len(ch_mult) - 1)``.

    ``conv_in`` -> levels ``down.0 .. down.{n-1}`` (channels ``ch * ch_mult[i]``) -> ``mid`` ->
    ``norm_out``, SiLU, ``conv_out`` to ``z_channels``.

    Args:
        ch (int): Base channels.
        ch_mult (Sequence[int]): Channel multiplier of each resolution level.
        num_res_blocks (int): ResnetBlocks per level.
        z_channels (int): Output channels.
        in_channels (int): Image channels.
    """

    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, in_channels=3):
        super().__init__()
        channels = [ch * mult for mult in ch_mult]
        last = len(channels) - 1
        self.conv_in = conv3x3(in_channels, ch)
        self.down = nn.ModuleList(
            EncoderLevel(cin, cout, num_res_blocks, use_attn=level == last, downsample=level != last)
            for level, (cin, cout) in enumerate(zip([ch] + channels[:-1], channels)))
        self.mid = MidBlock(channels[-1])
        self.norm_out = group_norm(channels[-1])
        self.conv_out = conv3x3(channels[-1], z_channels)

    def forward(self, x):
        """``(B, in_channels, H, W)`` -> ``(B, z_channels, H / f, W / f)`` with f the downsample factor."""
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h)), inplace=True))


class Decoder(nn.Module):
    """Latent to image, upsampling by ``2 ** (len(ch_mult) - 1)``.

    ``conv_in`` -> ``mid`` -> levels ``up.{n-1} .. up.0`` (``num_res_blocks + 1`` blocks each, channels
    ``ch * ch_mult[i]``) -> ``norm_out``, SiLU, ``conv_out`` to image channels. ``up`` is indexed by
    resolution (``up.0`` is the full resolution), as in the official checkpoints.

    Args:
        ch (int): Base channels.
        ch_mult (Sequence[int]): Channel multiplier of each resolution level.
        num_res_blocks (int): The decoder uses ``num_res_blocks + 1`` ResnetBlocks per level.
        z_channels (int): Input latent channels.
        out_channels (int): Image channels.
    """

    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, out_channels=3):
        super().__init__()
        channels = [ch * mult for mult in ch_mult]
        last = len(channels) - 1
        self.conv_in = conv3x3(z_channels, channels[-1])
        self.mid = MidBlock(channels[-1])
        self.up = nn.ModuleList(
            DecoderLevel(cin, cout, num_res_blocks + 1, use_attn=level == last, upsample=level != 0)
            for level, (cin, cout) in enumerate(zip(channels[1:] + channels[-1:], channels)))
        self.norm_out = group_norm(channels[0])
        self.conv_out = conv3x3(channels[0], out_channels)

    def forward(self, z):
        """``(B, z_channels, h, w)`` -> ``(B, out_channels, h * f, w * f)`` with f the upsample factor."""
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))
