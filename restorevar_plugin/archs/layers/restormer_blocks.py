"""Restormer building blocks (Zamir et al., CVPR 2022) as PromptIR and AWRaCLe use them.

Parameter names follow the official ``net/model.py`` of va1shn9v/PromptIR (and of AWRaCLe, which
copies it), so official checkpoints load strictly. Every block maps ``(B, C, H, W) -> (B, C', H', W')``
on feature maps of any range.
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

LAYER_NORM_EPS = 1e-5
LAYER_NORM_TYPES = ('WithBias', 'BiasFree')


class BiasFreeLayerNorm(nn.Module):
    """LayerNorm without mean subtraction and without bias: ``x / sqrt(var(x) + 1e-5) * weight``.

    Shapes: ``(..., C) -> (..., C)``.
    """

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        variance = x.var(-1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(variance + LAYER_NORM_EPS) * self.weight


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a feature map, the official ``LayerNorm(dim, LayerNorm_type)``.

    Args:
        dim (int): Channels C.
        layer_norm_type (str): ``'WithBias'`` (``body.weight``, ``body.bias``) or ``'BiasFree'``
            (``body.weight`` only, no mean subtraction).

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, dim, layer_norm_type='WithBias'):
        super().__init__()
        if layer_norm_type not in LAYER_NORM_TYPES:
            raise ValueError(f'layer_norm_type must be one of {", ".join(LAYER_NORM_TYPES)}; got {layer_norm_type!r}')
        self.body = nn.LayerNorm(dim, eps=LAYER_NORM_EPS) if layer_norm_type == 'WithBias' else BiasFreeLayerNorm(dim)

    def forward(self, x):
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedDconvFeedForward(nn.Module):
    """GDFN: 1x1 conv to ``2 * int(dim * expansion)`` channels, depthwise 3x3, ``GELU(x1) * x2``, 1x1 conv back.

    Official names ``project_in``, ``dwconv``, ``project_out``. Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim, expansion, bias=False):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransposedAttention(nn.Module):
    """MDTA: multi-head attention across channels (a ``C/heads x C/heads`` map per head).

    q, k, v come from a 1x1 conv and a depthwise 3x3 conv; q and k are L2-normalised over the pixels and
    the logits scaled by a learnable per-head ``temperature``. Official names ``temperature``, ``qkv``,
    ``qkv_dwconv``, ``project_out``. Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim, num_heads, bias=False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'TransposedAttention: dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        height = x.shape[-2]
        q, k, v = (rearrange(t, 'b (head c) h w -> b head c (h w)', head=self.num_heads)
                   for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q = F.normalize(q, dim=-1) * self.temperature
        out = F.scaled_dot_product_attention(q, F.normalize(k, dim=-1), v, scale=1.0)
        return self.project_out(rearrange(out, 'b head c (h w) -> b (head c) h w', h=height))


class TransformerBlock(nn.Module):
    """Restormer block: ``x + MDTA(LN(x))``, then ``x + GDFN(LN(x))``. Shapes: ``(B, dim, H, W)`` both ways."""

    def __init__(self, dim, num_heads, ffn_expansion_factor=2.66, bias=False, layer_norm_type='WithBias'):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, layer_norm_type)
        self.attn = TransposedAttention(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, layer_norm_type)
        self.ffn = GatedDconvFeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 conv embedding ``proj``: ``(B, in_channels, H, W) -> (B, dim, H, W)``."""

    def __init__(self, in_channels=3, dim=48, bias=False):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):
    """3x3 conv to ``C / 2`` then PixelUnshuffle(2): ``(B, C, H, W) -> (B, 2C, H/2, W/2)`` (``body.0``)."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    """3x3 conv to ``2C`` then PixelShuffle(2): ``(B, C, H, W) -> (B, C/2, 2H, 2W)`` (``body.0``)."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


def transformer_stage(count, dim, num_heads, ffn_expansion_factor, bias, layer_norm_type):
    """``nn.Sequential`` of ``count`` :class:`TransformerBlock` (indices ``0..count-1`` as officially)."""
    return nn.Sequential(*[TransformerBlock(dim, num_heads, ffn_expansion_factor, bias, layer_norm_type)
                           for _ in range(count)])
