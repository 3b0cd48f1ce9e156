"""Latent Refiner Transformer (LRT): turns RestoreVAR's discrete latent into a continuous one.

Input: the discrete ``f_hat`` flattened to tokens ``(B, N, 32)``; condition: the RestoreVAR transformer's
last-block hidden states of all L tokens ``(B, L, 1024)``. Each of the 12 layers does pre-norm
self-attention, a pre-norm GELU feed-forward and an (ungated) cross-attention to the condition, all
residual; a final LayerNorm and ``proj_out`` give a residual added to the input (global residual). Position
is a learned absolute embedding on both streams (no RoPE, despite the official file name
``vae_refiner_rope.py``, class ``Refiner``, of the official repository). Parameter names follow the
``vae_refiner.*`` part of ``restorevar.pth``.

``cross_attention=False`` builds the paper's "LRT w/o last block" ablation: self-attention + FFN layers
only, and no condition modules (``proj_in_cond``, ``pos_embedding_cond``, ``norm_in_cond``).
"""
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from .layers.attention import PreNormCrossAttention, PreNormSelfAttention
from .layers.ffn import PreNormFFN

# The official parent model re-initialises every Linear of the refiner with its own std sqrt(1 / (3 * 1024)).
OFFICIAL_INIT_STD = math.sqrt(1 / (3 * 1024))


class RefinerTransformer(nn.Module):
    """The LRT's layer stack: ``layers.L.{0: self-attn, 1: FFN, 2: cross-attn}``, then ``norm``.

    Args:
        dim (int): Token channels.
        depth (int): Number of layers.
        heads (int): Attention heads (head_dim = dim / heads).
        mlp_dim (int): FFN hidden channels.
        dropout (float): Dropout inside attention outputs and FFNs.
        cross_attention (bool): Add the cross-attention to every layer.
    """

    def __init__(self, dim, depth, heads, mlp_dim, dropout=0.0, cross_attention=True):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            layer = [PreNormSelfAttention(dim, heads, dim // heads, dropout), PreNormFFN(dim, mlp_dim, dropout)]
            if cross_attention:
                layer.append(PreNormCrossAttention(dim, heads))
            self.layers.append(nn.ModuleList(layer))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, cond=None):
        """Run all layers and the final norm.

        Args:
            x (Tensor): ``(B, N, dim)`` tokens.
            cond (Tensor | None): ``(B, M, dim)`` projected condition (unused without cross-attention).

        Returns:
            Tensor: ``(B, N, dim)``.
        """
        for layer in self.layers:
            x = layer[0](x) + x
            x = layer[1](x) + x
            if len(layer) == 3:
                x = layer[2](x, cond) + x
        return self.norm(x)


@ARCH_REGISTRY.register()
class LatentRefinerTransformer(nn.Module):
    """Latent Refiner Transformer (official ``Refiner`` layout).

    Args:
        seq_len (int): Tokens of the latent, ``G * G`` (1024 for a 32 x 32 latent at 512 px).
        seq_len_cond (int): Rows of ``pos_embedding_cond``: the largest condition length L (2240 at 512 px);
            a shorter condition uses the first rows.
        in_dim (int): Latent channels Cvae.
        in_dim_cond (int): Channels C of the transformer's hidden states.
        out_dim (int): Channels of the predicted residual (= ``in_dim``).
        dim (int): Internal width.
        depth (int): Layers.
        heads (int): Attention heads.
        mlp_dim (int): FFN hidden channels.
        cross_attention (bool): False builds the "w/o last block" ablation (no condition path).
        dropout (float): Dropout in attention outputs and FFNs (0 officially).
        init_std (float): Std of the truncated-normal init of every Linear weight; the official value is
            ``sqrt(1 / (3 * 1024))`` = 0.01804 (set by the parent VAR's ``init_weights``).
        pos_init_std (float): Std of the truncated-normal init of the position embeddings (0.02).

    ``TINY_CONFIG`` is a seconds-fast configuration of this class (the dummy configs of diffusers' tests), and
    :meth:`example_inputs` gives valid forward inputs for any configuration; ``tests/test_archs.py`` runs
    every registered arch through them.
    """

    # Refines the tiny MultiScaleVQVAE's 8 x 8 latent with the tiny transformer's 85 hidden states.
    TINY_CONFIG = {'seq_len': 64, 'seq_len_cond': 85, 'in_dim': 8, 'in_dim_cond': 32, 'out_dim': 8, 'dim': 32,
                   'depth': 2, 'heads': 2, 'mlp_dim': 64}

    def __init__(self,
                 seq_len=1024,
                 seq_len_cond=2240,
                 in_dim=32,
                 in_dim_cond=1024,
                 out_dim=32,
                 dim=384,
                 depth=12,
                 heads=6,
                 mlp_dim=768,
                 cross_attention=True,
                 dropout=0.0,
                 init_std=OFFICIAL_INIT_STD,
                 pos_init_std=0.02):
        super().__init__()
        if out_dim != in_dim:
            raise ValueError(f'out_dim ({out_dim}) must equal in_dim ({in_dim}): the output is added to the input')
        self.seq_len, self.seq_len_cond = seq_len, seq_len_cond
        self.in_dim, self.in_dim_cond, self.cross_attention = in_dim, in_dim_cond, cross_attention
        self.norm_in = nn.LayerNorm(in_dim)
        self.proj_in = nn.Linear(in_dim, dim, bias=False)
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_len, dim))
        if cross_attention:
            self.norm_in_cond = nn.LayerNorm(in_dim_cond)
            self.proj_in_cond = nn.Linear(in_dim_cond, dim, bias=False)
            self.pos_embedding_cond = nn.Parameter(torch.empty(1, seq_len_cond, dim))
        self.transformer = RefinerTransformer(dim, depth, heads, mlp_dim, dropout, cross_attention)
        self.proj_out = nn.Linear(dim, out_dim, bias=False)
        self.init_weights(init_std, pos_init_std)

    def init_weights(self, init_std=OFFICIAL_INIT_STD, pos_init_std=0.02):
        """Official initialisation: Linear weights ~ trunc_normal(init_std), biases 0, LayerNorms 1 / 0,
        position embeddings ~ trunc_normal(pos_init_std).

        Args:
            init_std (float): Std of the Linear weights.
            pos_init_std (float): Std of ``pos_embedding`` (and ``pos_embedding_cond``).
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=init_std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                if isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            nn.init.trunc_normal_(self.pos_embedding, std=pos_init_std)
            if self.cross_attention:
                nn.init.trunc_normal_(self.pos_embedding_cond, std=pos_init_std)

    def example_inputs(self, batch_size=2, generator=None):
        """Standard-normal ``(f_hat_tokens (batch_size, seq_len, in_dim), last_hidden (batch_size, seq_len_cond,
        in_dim_cond))`` for :meth:`forward`; ``(f_hat_tokens,)`` without cross-attention."""
        tokens = torch.randn(batch_size, self.seq_len, self.in_dim, generator=generator)
        if not self.cross_attention:
            return (tokens, )
        return tokens, torch.randn(batch_size, self.seq_len_cond, self.in_dim_cond, generator=generator)

    def forward(self, f_hat_tokens, last_hidden=None):
        """Refine the discrete latent.

        Args:
            f_hat_tokens (Tensor): ``(B, seq_len, in_dim)`` discrete ``f_hat`` tokens (row-major).
            last_hidden (Tensor | None): ``(B, M <= seq_len_cond, in_dim_cond)`` last-block hidden states of
                the RestoreVAR transformer; required with cross-attention, ignored by the ablation.

        Returns:
            Tensor: ``(B, seq_len, out_dim)`` continuous latent tokens, ``f_hat_tokens`` + predicted residual.
        """
        if f_hat_tokens.ndim != 3 or tuple(f_hat_tokens.shape[1:]) != (self.seq_len, self.in_dim):
            raise ValueError(f'f_hat_tokens must be (B, {self.seq_len}, {self.in_dim}), '
                             f'got {tuple(f_hat_tokens.shape)}')
        x = self.proj_in(self.norm_in(f_hat_tokens)) + self.pos_embedding
        cond = None
        if self.cross_attention:
            if last_hidden is None or last_hidden.ndim != 3 or last_hidden.shape[0] != f_hat_tokens.shape[0] \
                    or last_hidden.shape[1] > self.seq_len_cond or last_hidden.shape[2] != self.in_dim_cond:
                got = None if last_hidden is None else tuple(last_hidden.shape)
                raise ValueError(f'last_hidden must be (B={f_hat_tokens.shape[0]}, M <= {self.seq_len_cond}, '
                                 f'{self.in_dim_cond}), got {got}')
            cond = self.proj_in_cond(self.norm_in_cond(last_hidden))
            cond = cond + self.pos_embedding_cond[:, :last_hidden.shape[1]]
        return self.proj_out(self.transformer(x, cond)) + f_hat_tokens
