"""The official RestoreVAR inference procedure, transcribed functionally and driven by our modules' weights.

What ``infer.py`` of the official repository (sudraj2002/RestoreVAR) runs per image, step for step, so that
benchmarks can time it on the same CPU and weights and tests can check that our fast path computes the
same thing:

* ``VQVAE.img_to_fs``: the encoder returns every level's output, the mid block's and the final one; the taps
  1, 3, 5 and -1 are bicubic-resized to the ``G x G`` latent grid and flattened; only the last one (the
  encoder output before ``quant_conv``) is used afterwards.
* ``VAR.autoregressive_infer_cfg``: batch 1 in the official script; start token, condition tokens, then per
  scale the 16 blocks with the self-attention KV cache (no mask at inference, as officially), and in
  **every block at every scale** the cross-attention recomputes ``norm_kv`` and ``kv_proj`` of the
  1024 condition tokens and attends with explicit ``softmax(q k^T) v`` matmuls; greedy argmax; the
  quantizer's ``get_next_autoregressive_input``.
* The latent refiner (``vae_refiner_rope.Refiner``) with explicit-matmul attention, then
  ``fhat_to_img`` (``post_quant_conv``, decoder, clamp).

:func:`teacher_forced_logits` is the official teacher-forcing ``VAR.forward`` with the dense
``(1, 1, L, L)`` additive block-causal mask ``attn_bias_for_masking``.

Everything runs in the input's dtype (fp32), NCHW, no autocast. Shapes: images ``(B, 3, R, R)`` in [-1, 1].
"""
import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from einops import rearrange


# --------------------------------------------------------------------------------------------- VQVAE
def _conv(x, conv, stride=1, padding=1):
    return F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=padding)


def _group_norm(x, norm):
    return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


def _resnet_block(x, block):
    h = _conv(F.silu(_group_norm(x, block.norm1)), block.conv1)
    h = _conv(F.silu(_group_norm(h, block.norm2)), block.conv2)
    shortcut = x if isinstance(block.nin_shortcut, torch.nn.Identity) else _conv(x, block.nin_shortcut, padding=0)
    return shortcut + h


def _attn_block(x, block):
    batch, channels, height, width = x.shape
    qkv = _conv(_group_norm(x, block.norm), block.qkv, padding=0)
    q, k, v = qkv.reshape(batch, 3, channels, height * width).unbind(1)
    weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * channels**-0.5, dim=-1)
    h = torch.bmm(v, weights.transpose(1, 2)).reshape(batch, channels, height, width)
    return x + _conv(h, block.proj_out, padding=0)


def _level_blocks(x, level):
    for index, block in enumerate(level.block):
        x = _resnet_block(x, block)
        if len(level.attn):
            x = _attn_block(x, level.attn[index])
    return x


def _mid(x, mid):
    return _resnet_block(_attn_block(_resnet_block(x, mid.block_1), mid.attn_1), mid.block_2)


def encoder_taps(vqvae, img):
    """The official encoder with ``return_lvls``: every level's output, the mid block's and the last.

    Returns:
        list[Tensor]: ``len(ch_mult) + 2`` tensors; the last is ``(B, z, R / 16, R / 16)``.
    """
    encoder = vqvae.encoder
    taps = []
    h = _conv(img, encoder.conv_in)
    for level in encoder.down:
        h = _level_blocks(h, level)
        taps.append(h)
        if not isinstance(level.downsample, torch.nn.Identity):
            h = _conv(F.pad(h, (0, 1, 0, 1)), level.downsample.conv, stride=2, padding=0)
    h = _mid(h, encoder.mid)
    taps.append(h)
    taps.append(_conv(F.silu(_group_norm(h, encoder.norm_out)), encoder.conv_out))
    return taps


def img_to_fs(vqvae, img):
    """``VQVAE.img_to_fs``: taps 1, 3, 5 and -1 bicubic-resized to ``G x G``, each ``(B, G * G, C_tap)``.

    Smaller test configurations (fewer levels) keep the taps 1, 3, 5 that exist; the last tap is always last.
    """
    grid = vqvae.patch_nums[-1]
    taps = encoder_taps(vqvae, img)
    kept = [index for index in (1, 3, 5) if index < len(taps) - 1] + [len(taps) - 1]
    return [rearrange(F.interpolate(taps[index], size=(grid, grid), mode='bicubic'), 'b c h w -> b (h w) c')
            for index in kept]


def fhat_to_img(vqvae, f_hat):
    """``VQVAE.fhat_to_img``: ``decoder(post_quant_conv(f_hat))`` clamped to [-1, 1]."""
    decoder = vqvae.decoder
    h = _mid(_conv(_conv(f_hat, vqvae.post_quant_conv), decoder.conv_in), decoder.mid)
    for level in reversed(decoder.up):
        h = _level_blocks(h, level)
        if not isinstance(level.upsample, torch.nn.Identity):
            h = _conv(F.interpolate(h, scale_factor=2, mode='nearest'), level.upsample.conv)
    return _conv(F.silu(_group_norm(h, decoder.norm_out)), decoder.conv_out).clamp(-1, 1)


def _phi(quantizer, h, scale_index):
    conv = quantizer.quant_resi.qresi_ls[quantizer.phi_indices[scale_index]]
    return h.mul(1 - conv.ratio) + _conv(h, conv).mul_(conv.ratio)


def next_autoregressive_input(quantizer, scale_index, f_hat, h):
    """``VectorQuantizer2.get_next_autoregressive_input``: ``f_hat`` plus phi of the upsampled codes, and the
    area-downsampled next input (``f_hat`` itself after the last scale)."""
    patch_nums = quantizer.patch_nums
    grid = patch_nums[-1]
    if scale_index != len(patch_nums) - 1:
        f_hat = f_hat + _phi(quantizer, F.interpolate(h, size=(grid, grid), mode='bicubic'), scale_index)
        side = patch_nums[scale_index + 1]
        return f_hat, F.interpolate(f_hat, size=(side, side), mode='area')
    f_hat = f_hat + _phi(quantizer, h, scale_index)
    return f_hat, f_hat


# ------------------------------------------------------------------------------------------ transformer
def _rotate_pairs(x, table):
    """``apply_rotary_emb``: interleaved channel pairs of ``(B, H, N, d)`` times the complex ``(N, d/2)`` table."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * table).flatten(3).type_as(x)


def _temperature(attn):
    return attn.scale_mul_1H11.clamp_max(math.log(100.0)).exp()


def _self_attention(attn, x, table, cache, mask=None):
    batch, length, width = x.shape
    heads = attn.num_heads
    bias = torch.cat((attn.q_bias, torch.zeros_like(attn.q_bias), attn.v_bias))
    qkv = F.linear(x, attn.mat_qkv.weight, bias).view(batch, length, 3, heads, width // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    q = F.normalize(q, dim=-1).mul(_temperature(attn))
    k = F.normalize(k, dim=-1)
    q, k = _rotate_pairs(q, table), _rotate_pairs(k, table)
    if cache is not None:
        if cache:
            k = torch.cat((cache['k'], k), dim=2)
            v = torch.cat((cache['v'], v), dim=2)
        cache['k'], cache['v'] = k, v
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    return attn.proj(out.transpose(1, 2).reshape(batch, length, width))


def _cross_attention(cross, x, condition, table, cond_table):
    """The official ``CrossAttention``: K/V of the whole condition recomputed at every call."""
    heads = cross.num_heads
    q = cross.q_proj(cross.norm_q(x))
    k, v = cross.kv_proj(cross.norm_kv(condition)).chunk(2, dim=-1)
    q, k, v = (rearrange(t, 'b l (h d) -> b h l d', h=heads) for t in (q, k, v))
    q = F.normalize(q, dim=-1) * _temperature(cross)
    k = F.normalize(k, dim=-1)
    q, k = _rotate_pairs(q, table), _rotate_pairs(k, cond_table)
    out = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1), v)
    return cross.gain * cross.out_proj(rearrange(out, 'b h l d -> b l (h d)'))


def _block(block, x, condition, table, cond_table, cache, mask=None):
    x = x + _self_attention(block.attn, block.norm(x), table, cache, mask)
    x = x + block.ffn(block.norm(x))
    return x + _cross_attention(block.cross_attn, x, condition, table, cond_table)


def _start_and_condition(transformer, cond_tokens):
    """Start token ``(B, 1, C)`` (before its level embedding) and condition tokens ``(B, G*G, C)``."""
    projected = transformer.cond_proj4(cond_tokens)
    global_vector = transformer.global_embed_gain * transformer.global_embed(projected.mean(dim=1, keepdim=True))
    start = transformer.class_emb.weight[transformer.num_classes] + global_vector
    condition = transformer.word_embed_cond(projected) + transformer.lvl_embed_cond.weight[0]
    return start.expand(-1, transformer.patch_nums[0]**2, -1), condition


def autoregressive_infer(transformer, vqvae, cond_tokens):
    """Greedy next-scale generation as ``autoregressive_infer_cfg`` (before the refiner).

    Args:
        cond_tokens (Tensor): ``(B, G*G, Cvae)``, the last element of :func:`img_to_fs` (the official ``[3]``).

    Returns:
        tuple[list[Tensor], Tensor, Tensor]: per-scale indices ``(B, pn*pn)``, ``f_hat`` ``(B, Cvae, G, G)``
        and the last block's hidden states ``(B, L, C)``.
    """
    start, condition = _start_and_condition(transformer, cond_tokens)
    levels = transformer.lvl_embed(transformer.level_ids)
    quantizer = vqvae.quantize
    grid = transformer.patch_nums[-1]
    caches = [{} for _ in transformer.blocks]
    tokens = start + levels[:transformer.scale_spans[0][1]]
    f_hat = start.new_zeros(start.shape[0], transformer.z_channels, grid, grid)
    indices, hidden = [], []
    for scale, (begin, end) in enumerate(transformer.scale_spans):
        table = transformer.rope[begin:end]
        x = tokens
        for block, cache in zip(transformer.blocks, caches):
            x = _block(block, x, condition, table, transformer.rope_cond, cache)
        hidden.append(x)
        idx = transformer.head(transformer.head_nm(x)).argmax(dim=-1)
        indices.append(idx)
        side = transformer.patch_nums[scale]
        h = quantizer.embedding(idx).transpose(1, 2).reshape(idx.shape[0], transformer.z_channels, side, side)
        f_hat, next_map = next_autoregressive_input(quantizer, scale, f_hat, h)
        if scale != len(transformer.patch_nums) - 1:
            next_end = transformer.scale_spans[scale + 1][1]
            tokens = transformer.word_embed(next_map.flatten(2).transpose(1, 2)) + levels[end:next_end]
    return indices, f_hat, torch.cat(hidden, dim=1)


def teacher_forced_logits(transformer, cond_tokens, teacher_input):
    """The official teacher-forcing ``VAR.forward``: all L tokens at once under the dense additive mask.

    Args:
        cond_tokens (Tensor): ``(B, G*G, Cvae)`` condition features.
        teacher_input (Tensor): ``(B, L - 1, Cvae)`` from ``indices_to_teacher_input``.

    Returns:
        Tensor: ``(B, L, V)`` float32 logits.
    """
    start, condition = _start_and_condition(transformer, cond_tokens)
    x = torch.cat((start, transformer.word_embed(teacher_input)), dim=1) + transformer.lvl_embed(transformer.level_ids)
    levels = transformer.level_ids
    mask = torch.where(levels[:, None] >= levels[None, :], 0.0, -math.inf).reshape(1, 1, len(levels), len(levels))
    for block in transformer.blocks:
        x = _block(block, x, condition, transformer.rope, transformer.rope_cond, None, mask.to(x.dtype))
    return transformer.head(transformer.head_nm(x)).float()


# ---------------------------------------------------------------------------------------------- refiner
def _refiner_attention(q, k, v, heads):
    q, k, v = (rearrange(t, 'b n (h d) -> b h n d', h=heads) for t in (q, k, v))
    weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1]**-0.5, dim=-1)
    return rearrange(torch.matmul(weights, v), 'b h n d -> b n (h d)')


def refine(refiner, f_hat_tokens, last_hidden):
    """The official ``Refiner.forward`` with explicit-matmul attention: ``(B, G*G, Cvae)`` refined tokens."""
    x = refiner.proj_in(refiner.norm_in(f_hat_tokens)) + refiner.pos_embedding
    cond = None
    if refiner.cross_attention:
        cond = refiner.proj_in_cond(refiner.norm_in_cond(last_hidden))
        cond = cond + refiner.pos_embedding_cond[:, :last_hidden.shape[1]]
    for layer in refiner.transformer.layers:
        attn = layer[0]
        q, k, v = attn.to_qkv(attn.norm(x)).chunk(3, dim=-1)
        x = attn.to_out(_refiner_attention(q, k, v, attn.num_heads)) + x
        x = layer[1](x) + x
        if len(layer) == 3:
            cross = layer[2]
            k, v = cross.to_kv(cross.norm_kv(cond)).chunk(2, dim=-1)
            x = cross.to_out(_refiner_attention(cross.to_q(cross.norm_q(x)), k, v, cross.num_heads)) + x
    return refiner.proj_out(refiner.transformer.norm(x)) + f_hat_tokens


# -------------------------------------------------------------------------------------------- pipeline
@torch.no_grad()
def official_restore(vqvae, transformer, refiner, img, timer=None):
    """The whole official inference of ``img`` ``(B, 3, R, R)`` in [-1, 1], one image at a time (batch 1).

    Args:
        vqvae (MultiScaleVQVAE), transformer (RestoreVARTransformer), refiner (LatentRefinerTransformer |
            None): Supply the weights (eval mode expected).
        timer (callable | None): ``timer(name)`` returns a context manager timing the steps ``encoder``,
            ``generation``, ``refiner``, ``decoder``.

    Returns:
        dict: ``image`` ``(B, 3, R, R)`` in [-1, 1], ``indices`` (per-scale ``(B, pn*pn)``), ``f_hat`` and
        ``latent`` (refined) ``(B, Cvae, G, G)``.
    """
    measure = timer or (lambda name: nullcontext())
    outputs = []
    for image in img.split(1):
        with measure('encoder'):
            cond_tokens = img_to_fs(vqvae, image)[-1]
        with measure('generation'):
            indices, f_hat, hidden = autoregressive_infer(transformer, vqvae, cond_tokens)
        latent = f_hat
        if refiner is not None:
            with measure('refiner'):
                tokens = refine(refiner, f_hat.flatten(2).transpose(1, 2), hidden)
                latent = tokens.transpose(1, 2).reshape(f_hat.shape)
        with measure('decoder'):
            restored = fhat_to_img(vqvae, latent)
        outputs.append({'image': restored, 'indices': indices, 'f_hat': f_hat, 'latent': latent})
    return {
        'image': torch.cat([out['image'] for out in outputs]),
        'indices': [torch.cat(scale) for scale in zip(*[out['indices'] for out in outputs])],
        'f_hat': torch.cat([out['f_hat'] for out in outputs]),
        'latent': torch.cat([out['latent'] for out in outputs]),
    }
