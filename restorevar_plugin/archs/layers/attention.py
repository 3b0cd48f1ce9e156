"""Attention layers: the RestoreVAR transformer's self- and cross-attention, and the refiner's plain ones.

All use :func:`torch.nn.functional.scaled_dot_product_attention`. Parameter names follow the official
checkpoints (``mat_qkv``, ``q_bias``, ``v_bias``, ``scale_mul_1H11``, ``proj`` / ``q_proj``, ``kv_proj``,
``out_proj``, ``norm_q``, ``norm_kv``, ``gain`` / ``norm``, ``to_qkv``, ``to_out``, ``to_q``, ``to_kv``).

RestoreVAR attention is "L2-norm attention": q and k are L2-normalised per head, q is multiplied by a
learnable per-head temperature ``exp(min(scale_mul_1H11, log 100))`` (initialised to 4) and the softmax
scale is 1. Then 2D RoPE rotates q and k (:mod:`.rope2d`).
"""
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .rope2d import apply_rope

MAX_LOG_TEMPERATURE = math.log(100.0)
INIT_TEMPERATURE = 4.0


def _split_heads(x, num_heads, parts=1):
    """``(B, N, parts * heads * d)`` -> ``parts`` tensors of shape ``(B, heads, N, d)``."""
    return rearrange(x, 'b n (parts h d) -> parts b h n d', parts=parts, h=num_heads).unbind(0)


def _merge_heads(x):
    """``(B, heads, N, d)`` -> ``(B, N, heads * d)``."""
    return rearrange(x, 'b h n d -> b n (h d)')


def _temperature_parameter(num_heads):
    return nn.Parameter(torch.full((1, num_heads, 1, 1), INIT_TEMPERATURE).log())


def _scaled_unit_queries(q, log_temperature):
    """L2-normalised queries times the clamped per-head temperature; ``q`` is ``(B, heads, N, d)``."""
    return F.normalize(q, dim=-1) * log_temperature.clamp(max=MAX_LOG_TEMPERATURE).exp()


class SelfAttention(nn.Module):
    """RestoreVAR self-attention with L2-norm attention, 2D RoPE and an optional KV cache.

    q/k/v come from one bias-free ``mat_qkv`` Linear(C, 3C) plus the learnable ``q_bias`` and ``v_bias``
    (the key bias is zero: the official zero buffer ``zero_k_bias`` is not kept as a tensor).

    Args:
        dim (int): Token channels C.
        num_heads (int): Heads; ``C / num_heads`` must be a multiple of 4 (2D RoPE).
    """

    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.scale_mul_1H11 = _temperature_parameter(num_heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope, attn_mask=None, kv_cache=None):
        """Attend over the tokens of ``x`` (and over the cached earlier tokens, if a cache is given).

        Args:
            x (Tensor): ``(B, N, C)`` normalised tokens.
            rope (Tensor): ``(N, head_dim / 2)`` complex RoPE table of these tokens.
            attn_mask (Tensor | None): ``(N, N_keys)`` boolean, True where attention is allowed.
            kv_cache (KVCache | None): Cache extended with this call's keys and values.

        Returns:
            Tensor: ``(B, N, C)``.
        """
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = _split_heads(F.linear(x, self.mat_qkv.weight, bias), self.num_heads, parts=3)
        q = apply_rope(_scaled_unit_queries(q, self.scale_mul_1H11), rope)
        k = apply_rope(F.normalize(k, dim=-1), rope)
        if kv_cache is not None:
            k, v = kv_cache.extend(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
        return self.proj(_merge_heads(out))


class GatedCrossAttention(nn.Module):
    """RestoreVAR cross-attention from the tokens to the degraded-image condition, gated by a scalar.

    ``gain * out_proj(attn(q_proj(norm_q(x)), kv_proj(norm_kv(cond))))`` with affine LayerNorms (eps 1e-5),
    bias-free projections, L2-norm attention, RoPE on q (token positions) and k (condition grid), no mask.
    ``gain`` is one scalar initialised to 0, so a fresh block ignores the condition.

    The keys and values depend only on the condition: :meth:`condition_kv` computes them once per image
    (the official code recomputes them in every block at every scale) and :meth:`forward` reuses them.

    Args:
        dim (int): Token channels C (the condition tokens have C channels too).
        num_heads (int): Heads.
    """

    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim, eps=1e-5)
        self.norm_kv = nn.LayerNorm(dim, eps=1e-5)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.kv_proj = nn.Linear(dim, 2 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim)
        self.scale_mul_1H11 = _temperature_parameter(num_heads)
        self.gain = nn.Parameter(torch.tensor(0.0))

    def condition_kv(self, coefficients, basis, cond_rope):
        """Keys (normalised, rotated) and values of the condition tokens, from their factored form.

        The condition tokens after the LayerNorm's centring and scaling (before its affine) are given as
        ``coefficients @ basis`` (see ``RestoreVARTransformer._embed_condition``): then
        ``kv_proj(norm_kv(cond)) = coefficients @ kv_proj(basis * weight) + kv_proj(bias)``, which projects
        ``r`` basis rows instead of M tokens (the same values up to rounding).

        Args:
            coefficients (Tensor): ``(B, M, r)``.
            basis (Tensor): ``(r, C)``.
            cond_rope (Tensor): ``(M, head_dim / 2)`` complex RoPE table of the condition grid.

        Returns:
            tuple[Tensor, Tensor]: Keys and values, each ``(B, heads, M, head_dim)``.
        """
        kv_basis = F.linear(basis * self.norm_kv.weight, self.kv_proj.weight)
        kv = torch.matmul(coefficients, kv_basis) + F.linear(self.norm_kv.bias, self.kv_proj.weight)
        k, v = _split_heads(kv, self.num_heads, parts=2)
        return apply_rope(F.normalize(k, dim=-1), cond_rope), v

    def forward(self, x, rope, cond_kv):
        """Gated attention output for the tokens ``x``.

        Args:
            x (Tensor): ``(B, N, C)`` tokens (the block's residual stream, not normalised).
            rope (Tensor): ``(N, head_dim / 2)`` complex RoPE table of these tokens.
            cond_kv (tuple[Tensor, Tensor]): Output of :meth:`condition_kv`.

        Returns:
            Tensor: ``(B, N, C)``, already multiplied by ``gain``.
        """
        (q, ) = _split_heads(self.q_proj(self.norm_q(x)), self.num_heads)
        q = apply_rope(_scaled_unit_queries(q, self.scale_mul_1H11), rope)
        out = F.scaled_dot_product_attention(q, *cond_kv, scale=1.0)
        return self.gain * self.out_proj(_merge_heads(out))


class PreNormSelfAttention(nn.Module):
    """Refiner self-attention: ``to_out(MHA(to_qkv(norm(x))))``, softmax scale ``head_dim ** -0.5``.

    Args:
        dim (int): Token channels.
        num_heads (int): Heads.
        head_dim (int): Channels per head.
        dropout (float): Dropout after ``to_out`` (``to_out.1``).

    Shapes: ``(B, N, dim) -> (B, N, dim)``.
    """

    def __init__(self, dim, num_heads, head_dim, dropout=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(num_heads * head_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        q, k, v = _split_heads(self.to_qkv(self.norm(x)), self.num_heads, parts=3)
        return self.to_out(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class PreNormCrossAttention(nn.Module):
    """Refiner cross-attention: queries ``to_q(norm_q(x))``, keys/values ``to_kv(norm_kv(cond))``, no gate.

    Args:
        dim (int): Channels of the tokens and of the (already projected) condition.
        num_heads (int): Heads; head_dim = dim / num_heads.

    Shapes: ``x (B, N, dim)``, ``cond (B, M, dim) -> (B, N, dim)``.
    """

    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'refiner dim {dim} is not divisible by heads {num_heads}')
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, cond):
        (q, ) = _split_heads(self.to_q(self.norm_q(x)), self.num_heads)
        k, v = _split_heads(self.to_kv(self.norm_kv(cond)), self.num_heads, parts=2)
        return self.to_out(_merge_heads(F.scaled_dot_product_attention(q, k, v)))
