"""RestoreVAR transformer: next-scale prediction conditioned on the degraded image (official layout).

A VAR-d16 without AdaLN and without absolute positions: each block is
``x += DP(SA(LN(x))); x += DP(FFN(LN(x))); x += DP(gain * CA(x, cond))`` with one non-affine LayerNorm
(eps 1e-6) serving SA and FFN, L2-norm attention, 2D RoPE, and a zero-gated cross-attention to the
degraded image's VQVAE encoder features (before ``quant_conv``). The start token is
``class_emb[num_classes] + global_embed_gain * global_embed(mean(cond_proj4(c)))``; ``lvl_embed`` marks
the scale of every token. Source: the official ``models/var.py`` and ``models/basic_var.py``
(github.com/sudraj2002/RestoreVAR).

Official buffers. ``restorevar.pth`` stores six kinds of buffers that are pure functions of the
configuration: ``freqs_cis`` and ``freqs_cis_cross`` (complex RoPE tables), ``attn_bias_for_masking``
(the 2240 x 2240 block-causal mask, 20 MB in float32), ``lvl_1L``, ``lvl_1L_cond`` (level ids) and
``blocks.N.attn.zero_k_bias`` (zeros). This module keeps the RoPE tables and level ids as
**non-persistent** buffers under its own names (``rope``, ``rope_cond``, ``level_ids``), builds the
block-causal mask on the fly as a boolean ``(L, L)`` tensor (5 MB at 512 px, only in teacher forcing), and
never materialises the zero key bias. Our state dict therefore holds parameters only (334 keys at the
official config). :func:`restorevar_plugin.checkpoints.official.load_official_restorevar` compares every
stored official buffer with :meth:`RestoreVARTransformer.official_buffers` (a mismatch means another
``patch_nums`` or head size and raises) and drops it, then loads the parameters strictly.
"""
import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from basicsr.archs.swinir_arch import DropPath
from basicsr.utils.registry import ARCH_REGISTRY
from einops import rearrange
from torch import nn

from .layers.attention import GatedCrossAttention, SelfAttention
from .layers.ffn import FFN
from .layers.kv_cache import KVCache
from .layers.rope2d import grid_rope_table, multiscale_rope_table

RESTOREVAR_PATCH_NUMS = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)

def full_precision(device):
    """Context in which autocast is off on ``device`` (the official model embeds tokens in fp32).

    The ``meta`` device (FLOP counting) has no autocast: nothing to switch off there.
    """
    if device.type == 'meta':
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


@dataclass
class GenerationResult:
    """Output of :meth:`RestoreVARTransformer.generate`.

    Attributes:
        indices (list[Tensor]): Per scale, the greedy token indices ``(B, pn * pn)`` int64.
        f_hat (Tensor): ``(B, Cvae, G, G)`` discrete latent accumulated over all scales.
        last_hidden (Tensor): ``(B, L, C)`` last block's output for every token (before ``head_nm``), the
            latent refiner's condition.
    """

    indices: list
    f_hat: torch.Tensor
    last_hidden: torch.Tensor


class RestoreVARBlock(nn.Module):
    """One block: self-attention, FFN (sharing one non-affine LayerNorm), then gated cross-attention.

    Args:
        dim (int): Token channels C.
        num_heads (int): Attention heads.
        mlp_ratio (float): FFN hidden size / C.
        drop_path (float): Stochastic-depth probability of the three residual branches.
        norm_eps (float): Epsilon of the non-affine LayerNorm.
    """

    def __init__(self, dim, num_heads, mlp_ratio, drop_path, norm_eps):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.attn = SelfAttention(dim, num_heads)
        self.ffn = FFN(dim, round(dim * mlp_ratio))
        self.cross_attn = GatedCrossAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, rope, cond_kv, attn_mask=None, kv_cache=None):
        """Run the block on the tokens ``x``.

        Args:
            x (Tensor): ``(B, N, C)`` residual stream.
            rope (Tensor): ``(N, head_dim / 2)`` complex RoPE table of these tokens.
            cond_kv (tuple[Tensor, Tensor]): This block's :meth:`GatedCrossAttention.condition_kv`.
            attn_mask (Tensor | None): ``(N, N_keys)`` bool self-attention mask (True = attend).
            kv_cache (KVCache | None): This block's self-attention cache during generation.

        Returns:
            Tensor: ``(B, N, C)``.
        """
        x = x + self.drop_path(self.attn(self.norm(x), rope, attn_mask=attn_mask, kv_cache=kv_cache))
        x = x + self.drop_path(self.ffn(self.norm(x)))
        return x + self.drop_path(self.cross_attn(x, rope, cond_kv))


@ARCH_REGISTRY.register()
class RestoreVARTransformer(nn.Module):
    """RestoreVAR transformer (official ``restorevar.pth`` layout without ``vae_refiner.*``).

    Args:
        depth (int): Number of blocks; width defaults to ``64 * depth`` and heads to ``depth`` (head_dim 64).
        vocab_size (int): VQVAE codebook size V.
        z_channels (int): VQVAE latent channels Cvae (of the token inputs and of the condition).
        patch_nums (Sequence[int]): Token-map side of every scale; ``patch_nums[-1]`` is the latent grid G.
        drop_path_rate (float | None): Largest stochastic-depth rate (linear from 0 over the blocks);
            None gives the official ``0.1 * depth / 24``.
        rope_base (float): 2D RoPE base theta.
        num_classes (int): Class-embedding size of base VAR; the start token always uses the null class
            ``num_classes`` (``class_emb`` has ``num_classes + 1`` rows).
        embed_dim (int | None): Override of the width C (tiny test configs); None gives ``64 * depth``.
        num_heads (int | None): Override of the head count; None gives ``depth``.
        mlp_ratio (float): FFN hidden size / C.
        norm_eps (float): Epsilon of the non-affine LayerNorms.
        cond_gain_init (float): Initial value of the condition gates (every block's ``cross_attn.gain`` and
            ``global_embed_gain``). 0, the official value, makes a fresh model ignore the condition, which is
            what fine-tuning from a pretrained VAR wants (the gates open as the condition becomes useful);
            training from scratch, as the CPU demo does, learns to use the condition sooner from 1.

    ``TINY_CONFIG`` is a seconds-fast configuration of this class (the dummy configs of diffusers' tests), and
    :meth:`example_inputs` gives valid forward inputs for any configuration; ``tests/test_archs.py`` runs
    every registered arch through them.
    """

    # Conditions on the tiny MultiScaleVQVAE's 8 x 8 latents (85 tokens over 4 scales).
    TINY_CONFIG = {'depth': 2, 'embed_dim': 32, 'num_heads': 2, 'vocab_size': 64, 'z_channels': 8,
                   'patch_nums': [1, 2, 4, 8]}

    def __init__(self,
                 depth=16,
                 vocab_size=4096,
                 z_channels=32,
                 patch_nums=RESTOREVAR_PATCH_NUMS,
                 drop_path_rate=None,
                 rope_base=10000.0,
                 num_classes=1000,
                 embed_dim=None,
                 num_heads=None,
                 mlp_ratio=4.0,
                 norm_eps=1e-6,
                 cond_gain_init=0.0):
        super().__init__()
        embed_dim = 64 * depth if embed_dim is None else embed_dim
        num_heads = depth if num_heads is None else num_heads
        drop_path_rate = 0.1 * depth / 24 if drop_path_rate is None else drop_path_rate
        if embed_dim % num_heads or (embed_dim // num_heads) % 4:
            raise ValueError(f'embed_dim {embed_dim} / num_heads {num_heads} must give a head size divisible by 4')
        self.depth, self.embed_dim, self.num_heads = depth, embed_dim, num_heads
        self.vocab_size, self.z_channels, self.num_classes = vocab_size, z_channels, num_classes
        self.patch_nums = tuple(patch_nums)
        self.rope_base, self.cond_gain_init = rope_base, float(cond_gain_init)
        self.grid = self.patch_nums[-1]
        self.scale_spans = []
        start = 0
        for pn in self.patch_nums:
            self.scale_spans.append((start, start + pn * pn))
            start += pn * pn
        self.seq_len = start

        self.word_embed = nn.Linear(z_channels, embed_dim)
        self.class_emb = nn.Embedding(num_classes + 1, embed_dim)
        self.lvl_embed = nn.Embedding(len(self.patch_nums), embed_dim)
        self.global_embed = nn.Linear(z_channels, embed_dim)
        self.global_embed_gain = nn.Parameter(torch.tensor(0.0))
        self.cond_proj4 = nn.Linear(z_channels, z_channels)
        self.word_embed_cond = nn.Linear(z_channels, embed_dim)
        self.lvl_embed_cond = nn.Embedding(1, embed_dim)

        drop_path_rates = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()
        self.blocks = nn.ModuleList(
            [RestoreVARBlock(embed_dim, num_heads, mlp_ratio, rate, norm_eps) for rate in drop_path_rates])
        self.head_nm = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        self.head = nn.Linear(embed_dim, vocab_size)

        head_dim = embed_dim // num_heads
        level_ids = torch.cat([torch.full((pn * pn, ), level) for level, pn in enumerate(self.patch_nums)])
        self.register_buffer('level_ids', level_ids, persistent=False)
        self.register_buffer('rope', multiscale_rope_table(self.patch_nums, head_dim, rope_base), persistent=False)
        self.register_buffer('rope_cond', grid_rope_table(self.grid, head_dim, rope_base), persistent=False)
        self.init_weights()

    def init_weights(self):
        """Official VAR initialisation of every Linear, Embedding and affine LayerNorm of this model.

        Linear and Embedding weights ~ trunc_normal(std = sqrt(1 / (3 C))), Linear biases 0, LayerNorm
        weight 1 and bias 0; then ``head.weight`` x 0.02 and every ``attn.proj`` / ``ffn.fc2`` weight
        / sqrt(2 depth) (``cross_attn.out_proj`` is not rescaled, as in the official code). The gates
        (``gain``, ``global_embed_gain``) are set to ``cond_gain_init`` (officially 0); the temperatures start
        at log 4 and ``q_bias`` / ``v_bias`` at 0 from their constructors.
        """
        std = math.sqrt(1 / (3 * self.embed_dim))
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.trunc_normal_(module.weight, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
                if isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            self.head.weight.mul_(0.02)
            self.global_embed_gain.fill_(self.cond_gain_init)
            for block in self.blocks:
                block.attn.proj.weight.div_(math.sqrt(2 * self.depth))
                block.ffn.fc2.weight.div_(math.sqrt(2 * self.depth))
                block.cross_attn.gain.fill_(self.cond_gain_init)

    def block_causal_mask(self, length=None):
        """Training mask: a token of scale i attends to every token of scales <= i.

        Args:
            length (int | None): Mask only the first ``length`` tokens (default: all L).

        Returns:
            Tensor: ``(length, length)`` bool, True where attention is allowed.
        """
        levels = self.level_ids[:length]
        return levels[:, None] >= levels[None, :]

    def official_buffers(self):
        """The buffers the official ``restorevar.pth`` stores, recomputed from this configuration.

        Returns:
            dict[str, Tensor]: ``freqs_cis`` ``(L, head_dim/2)`` complex64, ``freqs_cis_cross``
            ``(G*G, head_dim/2)`` complex64, ``attn_bias_for_masking`` ``(1, 1, L, L)`` float32 (0 or -inf),
            ``lvl_1L`` ``(1, L)`` int64, ``lvl_1L_cond`` ``(1, G*G)`` int64 (zeros) and
            ``blocks.N.attn.zero_k_bias`` ``(C,)`` zeros.
        """
        mask = self.block_causal_mask()
        additive_mask = torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, -math.inf)
        buffers = {
            'freqs_cis': self.rope,
            'freqs_cis_cross': self.rope_cond,
            'attn_bias_for_masking': additive_mask[None, None],
            'lvl_1L': self.level_ids[None],
            'lvl_1L_cond': torch.zeros(1, self.grid**2, dtype=torch.long, device=mask.device),
        }
        for index in range(self.depth):
            buffers[f'blocks.{index}.attn.zero_k_bias'] = torch.zeros(self.embed_dim, device=mask.device)
        return buffers

    def _check_cond(self, cond):
        expected = (self.z_channels, self.grid, self.grid)
        if cond.ndim != 4 or tuple(cond.shape[1:]) != expected:
            raise ValueError(f'cond must be (B, {", ".join(map(str, expected))}) VQVAE encoder features of the '
                             f'degraded image (before quant_conv), got {tuple(cond.shape)}')

    def _embed_condition(self, cond):
        """Projected condition tokens ``(B, G*G, Cvae)`` and the normalised cross-attention source, factored.

        The cross-attention source ``word_embed_cond(cond_tokens) + lvl_embed_cond`` ``(B, G*G, C)`` is affine
        in the ``Cvae``-channel tokens, so after a LayerNorm's centring and scaling (every block's ``norm_kv``,
        eps 1e-5) it equals ``coefficients @ basis``: ``coefficients`` ``(B, G*G, Cvae + 1)`` are ``[tokens, 1]``
        times each token's inverse standard deviation, ``basis`` ``(Cvae + 1, C)`` the centred rows of the
        affine map. Each block then projects the basis instead of the G*G tokens (exact up to rounding).
        """
        self._check_cond(cond)
        cond_tokens = self.cond_proj4(rearrange(cond, 'b c h w -> b (h w) c'))
        bias = self.word_embed_cond.bias + self.lvl_embed_cond.weight[0]
        affine = torch.cat([self.word_embed_cond.weight.T, bias[None]])
        basis = affine - affine.mean(dim=1, keepdim=True)
        coefficients = F.pad(cond_tokens, (0, 1), value=1.0)
        variance = torch.matmul(coefficients, basis).square().mean(dim=-1, keepdim=True)
        coefficients = coefficients * torch.rsqrt(variance + self.blocks[0].cross_attn.norm_kv.eps)
        return cond_tokens, (coefficients, basis)

    def _start_tokens(self, cond_tokens):
        """``(B, patch_nums[0]**2, C)`` start tokens: null-class embedding + gated global condition vector."""
        global_vector = self.global_embed_gain * self.global_embed(cond_tokens.mean(dim=1, keepdim=True))
        first_len = self.scale_spans[0][1]
        return (self.class_emb.weight[self.num_classes] + global_vector).expand(-1, first_len, -1)

    def _prepare_condition(self, cond):
        """Start tokens ``(B, patch_nums[0]**2, C)`` and every block's cross-attention keys/values.

        The condition and the start token are embedded in fp32 even under autocast, as the official model
        does; the per-block key/value projections follow the ambient precision.
        """
        with full_precision(cond.device):
            cond_tokens, (coefficients, basis) = self._embed_condition(cond.float())
            start_tokens = self._start_tokens(cond_tokens)
        return start_tokens, [block.cross_attn.condition_kv(coefficients, basis, self.rope_cond)
                              for block in self.blocks]

    def _run_blocks(self, x, rope, cond_kvs, attn_mask=None, kv_caches=None):
        kv_caches = kv_caches or [None] * self.depth
        for block, cond_kv, kv_cache in zip(self.blocks, cond_kvs, kv_caches):
            x = block(x, rope, cond_kv, attn_mask=attn_mask, kv_cache=kv_cache)
        return x

    def logits(self, hidden):
        """Token logits ``(B, N, V)`` float32 from last-block hidden states ``(B, N, C)``."""
        return self.head(self.head_nm(hidden)).float()

    def greedy_indices(self, hidden):
        """Argmax tokens ``(B, N)`` int64 of hidden states ``(B, N, C)``, with the head always in float32.

        Under reduced-precision autocast the blocks run in bf16 / fp16, but the choice between two close
        logits is made in float32: a bf16 head rounds the logits to 8 bits of mantissa, and most greedy
        indices that differ from fp32 are such near-ties. Costs one fp32 ``C x V`` matmul per token.
        """
        with full_precision(hidden.device):
            return self.logits(hidden.float()).argmax(dim=-1)

    def example_inputs(self, batch_size=2, generator=None):
        """``(cond, teacher_input)`` for :meth:`forward`: standard-normal ``(batch_size, z_channels, G, G)`` and
        ``(batch_size, seq_len - patch_nums[0] ** 2, z_channels)``."""
        cond = torch.randn(batch_size, self.z_channels, self.grid, self.grid, generator=generator)
        teacher_input = torch.randn(batch_size, self.seq_len - self.patch_nums[0]**2, self.z_channels,
                                    generator=generator)
        return cond, teacher_input

    def forward(self, cond, teacher_input):
        """Teacher-forced logits of every scale (stage-1 training).

        Args:
            cond (Tensor): ``(B, Cvae, G, G)`` degraded-image features,
                ``MultiScaleVQVAE.encode_features(degraded)``.
            teacher_input (Tensor): ``(B, L - patch_nums[0]**2, Cvae)`` ground-truth inputs of scales 1..,
                ``MultiScaleQuantizer.teacher_input(gt_indices)``.

        Returns:
            Tensor: ``(B, L, V)`` float32 logits.
        """
        expected = (cond.shape[0], self.seq_len - self.scale_spans[0][1], self.z_channels)
        if tuple(teacher_input.shape) != expected:
            raise ValueError(f'teacher_input must be {expected} (from MultiScaleQuantizer.teacher_input), '
                             f'got {tuple(teacher_input.shape)}')
        start_tokens, cond_kvs = self._prepare_condition(cond)
        with full_precision(cond.device):
            x = torch.cat([start_tokens, self.word_embed(teacher_input.float())], dim=1)
            x = x + self.lvl_embed(self.level_ids)
        x = self._run_blocks(x, self.rope, cond_kvs, attn_mask=self.block_causal_mask())
        return self.logits(x)

    def _check_vqvae(self, vqvae):
        mine = (self.patch_nums, self.vocab_size, self.z_channels)
        theirs = (tuple(vqvae.patch_nums), vqvae.vocab_size, vqvae.z_channels)
        if mine != theirs:
            raise ValueError(f'vqvae (patch_nums, vocab_size, z_channels) = {theirs} does not match the '
                             f'transformer\'s {mine}')

    @torch.no_grad()
    def generate(self, cond, vqvae, use_kv_cache=True):
        """Greedy (argmax) next-scale generation of the restored latent.

        The cross-attention keys/values of the condition are computed once per image for every block and
        reused at all scales. With ``use_kv_cache`` each scale runs only its own tokens against the cached
        keys/values of earlier scales; without it the whole prefix is recomputed at every scale under the
        block-causal mask (same result, more compute). The module's mode is left alone: call ``eval()`` for
        deterministic decoding (the official stage-3 training generated in train mode, with DropPath active).

        Args:
            cond (Tensor): ``(B, Cvae, G, G)`` degraded-image features (``vqvae.encode_features``).
            vqvae (MultiScaleVQVAE): Its quantizer supplies ``embed_indices`` and ``next_scale_input``; its patch_nums,
                vocab_size and z_channels must match this transformer's.
            use_kv_cache (bool): Cache self-attention keys/values across scales.

        Returns:
            GenerationResult: per-scale indices, the discrete ``f_hat`` ``(B, Cvae, G, G)`` and the last
            block's hidden states ``(B, L, C)``.
        """
        self._check_vqvae(vqvae)
        start_tokens, cond_kvs = self._prepare_condition(cond)
        kv_caches = [KVCache(self.seq_len) for _ in self.blocks] if use_kv_cache else None
        with full_precision(cond.device):
            level_embeddings = self.lvl_embed(self.level_ids)
            tokens = start_tokens + level_embeddings[:self.scale_spans[0][1]]
        f_hat = cond.new_zeros(cond.shape[0], self.z_channels, self.grid, self.grid, dtype=torch.float32)
        prefix, indices, hidden = [], [], []
        for scale, (start, end) in enumerate(self.scale_spans):
            if use_kv_cache:
                x = self._run_blocks(tokens, self.rope[start:end], cond_kvs, kv_caches=kv_caches)
            else:
                prefix.append(tokens)
                x = self._run_blocks(
                    torch.cat(prefix, dim=1), self.rope[:end], cond_kvs, attn_mask=self.block_causal_mask(end))
                x = x[:, start:]
            hidden.append(x)
            indices.append(self.greedy_indices(x))
            codes = vqvae.quantize.embed_indices(indices[-1], scale)
            f_hat, next_input = vqvae.quantize.next_scale_input(scale, f_hat, codes)
            if next_input is not None:
                next_end = self.scale_spans[scale + 1][1]
                with full_precision(cond.device):
                    tokens = self.word_embed(rearrange(next_input.float(), 'b c h w -> b (h w) c'))
                    tokens = tokens + level_embeddings[end:next_end]
        return GenerationResult(indices=indices, f_hat=f_hat, last_hidden=torch.cat(hidden, dim=1))
