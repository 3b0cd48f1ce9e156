"""Independent functional references of the official PromptIR and AWRaCLe forwards, for equality tests.

Transcribed from the official ``net/model.py`` of va1shn9v/PromptIR and sudraj2002/AWRaCLe as read in
the public repositories: plain ``torch.nn.functional`` calls driven by a state dict (no module of this
package), following the official operations literally (layer norm written out, ``repeat``-then-sum
prompts, explicit softmax attention). CLIP features come from the ``clip`` package's own model with a
forward hook on the last visual block's ``ln_2``, as the official AWRaCLe does.
"""
import re

import torch
import torch.nn.functional as F
from clip.model import CLIP

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def _layer_norm(x, sd, prefix):
    b, c, h, w = x.shape
    x3 = x.flatten(2).transpose(1, 2)
    mu = x3.mean(-1, keepdim=True)
    sigma = x3.var(-1, keepdim=True, unbiased=False)
    out = (x3 - mu) / torch.sqrt(sigma + 1e-5) * sd[prefix + '.body.weight'] + sd[prefix + '.body.bias']
    return out.transpose(1, 2).reshape(b, c, h, w)


def _mdta(x, sd, prefix):
    b, c, h, w = x.shape
    temperature = sd[prefix + '.temperature']
    heads = temperature.shape[0]
    qkv = F.conv2d(x, sd[prefix + '.qkv.weight'])
    qkv = F.conv2d(qkv, sd[prefix + '.qkv_dwconv.weight'], padding=1, groups=3 * c)
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in qkv.chunk(3, dim=1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = ((q @ k.transpose(-2, -1)) * temperature).softmax(dim=-1)
    return F.conv2d((attn @ v).reshape(b, c, h, w), sd[prefix + '.project_out.weight'])


def _gdfn(x, sd, prefix):
    hidden = sd[prefix + '.project_in.weight'].shape[0]
    x = F.conv2d(x, sd[prefix + '.project_in.weight'])
    x1, x2 = F.conv2d(x, sd[prefix + '.dwconv.weight'], padding=1, groups=hidden).chunk(2, dim=1)
    return F.conv2d(F.gelu(x1) * x2, sd[prefix + '.project_out.weight'])


def _block(x, sd, prefix):
    x = x + _mdta(_layer_norm(x, sd, prefix + '.norm1'), sd, prefix + '.attn')
    return x + _gdfn(_layer_norm(x, sd, prefix + '.norm2'), sd, prefix + '.ffn')


def _stage(x, sd, prefix):
    count = len({int(m.group(1)) for key in sd for m in [re.match(re.escape(prefix) + r'\.(\d+)\.', key)] if m})
    for index in range(count):
        x = _block(x, sd, f'{prefix}.{index}')
    return x


def _conv(x, sd, name, padding=0):
    return F.conv2d(x, sd[name + '.weight'], padding=padding)


def _prompt_gen(x, sd, prefix):
    b = x.shape[0]
    h, w = x.shape[-2:]
    emb = x.mean(dim=(-2, -1))
    weights = F.softmax(F.linear(emb, sd[prefix + '.linear_layer.weight'], sd[prefix + '.linear_layer.bias']), dim=1)
    param = sd[prefix + '.prompt_param']
    prompt = weights.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1) * param.unsqueeze(0).repeat(b, 1, 1, 1, 1, 1).squeeze(1)
    prompt = F.interpolate(torch.sum(prompt, dim=1), (h, w), mode='bilinear')
    return F.conv2d(prompt, sd[prefix + '.conv3x3.weight'], padding=1)


def _heads_attention(q, k, v, heads, dim_head):
    q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * dim_head ** -0.5, dim=-1)
    out = torch.matmul(attn, v)
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def _in_context(x, tokens, sd, prefix, heads, dim_head):
    context = tokens.permute(1, 0, 2)
    context = F.gelu(F.linear(context, sd[prefix + '.linear_layer_ctx.weight'], sd[prefix + '.linear_layer_ctx.bias']))
    half = context.shape[0] // 2
    context = torch.cat([context[:half], context[half:]], dim=1)
    normed = F.layer_norm(context, context.shape[-1:], sd[prefix + '.ctx_attn.norm.weight'],
                          sd[prefix + '.ctx_attn.norm.bias'])
    q, k, v = F.linear(normed, sd[prefix + '.ctx_attn.to_qkv.weight']).chunk(3, dim=-1)
    merged = F.linear(_heads_attention(q, k, v, heads, dim_head), sd[prefix + '.ctx_attn.to_out.weight'])
    x = F.gelu(F.conv2d(x, sd[prefix + '.proj_features.weight']))
    b, c, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)
    norm = (sd[prefix + '.fusion.norm.weight'], sd[prefix + '.fusion.norm.bias'])
    x = F.layer_norm(x, (c, ), *norm)
    merged = F.layer_norm(merged, (c, ), *norm)
    q = F.linear(x, sd[prefix + '.fusion.to_q.weight'])
    k, v = F.linear(merged, sd[prefix + '.fusion.to_kv.weight']).chunk(2, dim=-1)
    out = F.linear(_heads_attention(q, k, v, heads, dim_head), sd[prefix + '.fusion.to_out.weight'])
    out = out.transpose(1, 2).reshape(b, c, h, w)
    return F.gelu(F.conv2d(out, sd[prefix + '.conv3x3.weight'], padding=1))


def _unet(image, sd, prompt):
    enc1 = _stage(_conv(image, sd, 'patch_embed.proj', 1), sd, 'encoder_level1')
    enc2 = _stage(F.pixel_unshuffle(_conv(enc1, sd, 'down1_2.body.0', 1), 2), sd, 'encoder_level2')
    enc3 = _stage(F.pixel_unshuffle(_conv(enc2, sd, 'down2_3.body.0', 1), 2), sd, 'encoder_level3')
    latent = _stage(F.pixel_unshuffle(_conv(enc3, sd, 'down3_4.body.0', 1), 2), sd, 'latent')
    latent = torch.cat([latent, prompt(latent, 'prompt3')], 1)
    latent = _conv(_block(latent, sd, 'noise_level3'), sd, 'reduce_noise_level3')
    dec3 = torch.cat([F.pixel_shuffle(_conv(latent, sd, 'up4_3.body.0', 1), 2), enc3], 1)
    dec3 = _stage(_conv(dec3, sd, 'reduce_chan_level3'), sd, 'decoder_level3')
    dec3 = torch.cat([dec3, prompt(dec3, 'prompt2')], 1)
    dec3 = _conv(_block(dec3, sd, 'noise_level2'), sd, 'reduce_noise_level2')
    dec2 = torch.cat([F.pixel_shuffle(_conv(dec3, sd, 'up3_2.body.0', 1), 2), enc2], 1)
    dec2 = _stage(_conv(dec2, sd, 'reduce_chan_level2'), sd, 'decoder_level2')
    dec2 = torch.cat([dec2, prompt(dec2, 'prompt1')], 1)
    dec2 = _conv(_block(dec2, sd, 'noise_level1'), sd, 'reduce_noise_level1')
    dec1 = torch.cat([F.pixel_shuffle(_conv(dec2, sd, 'up2_1.body.0', 1), 2), enc1], 1)
    dec1 = _stage(_stage(dec1, sd, 'decoder_level1'), sd, 'refinement')
    return _conv(dec1, sd, 'output', 1) + image


def promptir_reference(state_dict, image):
    """The official PromptIR(decoder=True) forward on ``image`` ``(B, 3, H, W)``, H and W multiples of 8."""
    return _unet(image, state_dict, lambda x, prefix: _prompt_gen(x, state_dict, prefix))


def clip_reference_tokens(state_dict, clip_config, context_lq, context_gt):
    """The official AWRaCLe context features: CLIP built from ``clip_config`` with the ``clip.*`` weights,
    ``encode_image`` on the normalised (already CLIP-sized) contexts, the hooked last ``ln_2`` output."""
    model = CLIP(**clip_config)
    model.load_state_dict({key[len('clip.'):]: value for key, value in state_dict.items() if key.startswith('clip.')})
    captured = {}
    layer = model.visual.transformer.resblocks[-1].ln_2
    layer.register_forward_hook(lambda module, inputs, output: captured.update(tokens=output))
    images = (torch.cat([context_lq, context_gt], dim=0) - CLIP_MEAN) / CLIP_STD
    model.encode_image(images)
    return captured['tokens']


def awracle_reference(state_dict, clip_config, image, context_lq, context_gt, prompt_heads, dim_head):
    """The official AWRaCLe(decoder=True) forward: ``image`` ``(B, 3, H, W)`` (multiples of 8) and a context
    pair ``(B, 3, R, R)`` at CLIP's resolution R in [0, 1]."""
    tokens = clip_reference_tokens(state_dict, clip_config, context_lq, context_gt)
    heads = {'prompt1': prompt_heads[0], 'prompt2': prompt_heads[1], 'prompt3': prompt_heads[2]}
    return _unet(image, state_dict,
                 lambda x, prefix: _in_context(x, tokens, state_dict, prefix, heads[prefix], dim_head))
