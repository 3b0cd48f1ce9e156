"""RestoreVAR transformer: official layout and counts, RoPE, masks, gates, KV-cached generation, loading."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.references import (
    fake_base_var_state,
    reference_additive_mask,
    reference_levels,
    reference_rope_table,
)
from helpers.tiny_restorevar import (
    TINY,
    TINY_PATCH_NUMS,
    TINY_REFINER,
    random_cond,
    teacher_input_for,
    tiny_transformer,
    tiny_vqvae,
)
from restorevar_plugin.archs.layers.rope2d import (
    apply_rope,
    grid_rope_table,
    multiscale_rope_table,
    rope_frequencies,
    rope_table,
)
from restorevar_plugin.archs.refiner_arch import LatentRefinerTransformer
from restorevar_plugin.archs.restorevar_arch import RestoreVARTransformer
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE
from restorevar_plugin.checkpoints import (
    load_network,
    load_official_restorevar,
    load_var_pretrained,
)

PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)


def official_layout_state(transformer, refiner, generator):
    """Random values in the official restorevar.pth layout: our parameters + the official buffers + refiner."""
    state = {key: torch.randn(value.shape, generator=generator) for key, value in transformer.state_dict().items()}
    patch_nums = transformer.patch_nums
    head_dim = transformer.embed_dim // transformer.num_heads
    state['freqs_cis'] = reference_rope_table(patch_nums, head_dim)
    state['freqs_cis_cross'] = reference_rope_table((patch_nums[-1], ), head_dim)
    state['attn_bias_for_masking'] = reference_additive_mask(patch_nums)
    state['lvl_1L'] = reference_levels(patch_nums)[None]
    state['lvl_1L_cond'] = torch.zeros(1, patch_nums[-1]**2, dtype=torch.long)
    for index in range(transformer.depth):
        state[f'blocks.{index}.attn.zero_k_bias'] = torch.zeros(transformer.embed_dim)
    for key, value in refiner.state_dict().items():
        state[f'vae_refiner.{key}'] = torch.randn(value.shape, generator=generator)
    return state


# ------------------------------------------------------------------------------------------------ fixtures
# ---------------------------------------------------------------------------------------- full-size (meta)
def expected_official_shapes():
    """Facts sheet 3.7: parameter keys of restorevar.pth outside vae_refiner.*, with shapes."""
    shapes = {
        'global_embed_gain': (),
        'word_embed.weight': (1024, 32), 'word_embed.bias': (1024, ),
        'class_emb.weight': (1001, 1024), 'lvl_embed.weight': (10, 1024),
        'head.weight': (4096, 1024), 'head.bias': (4096, ),
        'global_embed.weight': (1024, 32), 'global_embed.bias': (1024, ),
        'cond_proj4.weight': (32, 32), 'cond_proj4.bias': (32, ),
        'word_embed_cond.weight': (1024, 32), 'word_embed_cond.bias': (1024, ),
        'lvl_embed_cond.weight': (1, 1024),
    }
    block = {
        'attn.scale_mul_1H11': (1, 16, 1, 1), 'attn.q_bias': (1024, ), 'attn.v_bias': (1024, ),
        'attn.mat_qkv.weight': (3072, 1024), 'attn.proj.weight': (1024, 1024), 'attn.proj.bias': (1024, ),
        'ffn.fc1.weight': (4096, 1024), 'ffn.fc1.bias': (4096, ), 'ffn.fc2.weight': (1024, 4096),
        'ffn.fc2.bias': (1024, ), 'cross_attn.scale_mul_1H11': (1, 16, 1, 1), 'cross_attn.gain': (),
        'cross_attn.q_proj.weight': (1024, 1024), 'cross_attn.kv_proj.weight': (2048, 1024),
        'cross_attn.out_proj.weight': (1024, 1024), 'cross_attn.out_proj.bias': (1024, ),
        'cross_attn.norm_q.weight': (1024, ), 'cross_attn.norm_q.bias': (1024, ),
        'cross_attn.norm_kv.weight': (1024, ), 'cross_attn.norm_kv.bias': (1024, ),
    }
    for index in range(16):
        shapes.update({f'blocks.{index}.{key}': shape for key, shape in block.items()})
    return shapes


def test_full_size_counts_and_official_key_layout():
    with torch.device('meta'):
        net = RestoreVARTransformer()
        refiner = LatentRefinerTransformer()
    assert sum(p.numel() for p in net.parameters()) == 273_986_097
    assert sum(p.numel() for p in net.blocks[0].parameters()) == 16_790_561
    assert {key: tuple(value.shape) for key, value in net.state_dict().items()} == expected_official_shapes()
    buffers = net.official_buffers()
    assert buffers['freqs_cis'].shape == (2240, 32) and buffers['freqs_cis'].dtype == torch.complex64
    assert buffers['freqs_cis_cross'].shape == (1024, 32) and buffers['freqs_cis_cross'].dtype == torch.complex64
    assert buffers['attn_bias_for_masking'].shape == (1, 1, 2240, 2240)
    official_keys = set(net.state_dict()) | set(buffers) | {f'vae_refiner.{k}' for k in refiner.state_dict()}
    assert len(official_keys) == 594
    assert sum(1 for key in official_keys if key.startswith('blocks.')) == 16 * 21
    assert sum(1 for key in official_keys if key.startswith('vae_refiner.')) == 239
    assert sum(1 for key in official_keys if not key.startswith(('blocks.', 'vae_refiner.'))) == 19


def test_default_drop_path_follows_the_official_rule():
    with torch.device('meta'):
        net = RestoreVARTransformer()
    assert net.blocks[0].drop_path.__class__.__name__ == 'Identity'
    assert net.blocks[-1].drop_path.drop_prob == pytest.approx(0.1 * 16 / 24)


# ------------------------------------------------------------------------------------------------- RoPE
def test_rope_frequencies_and_tables_match_the_formula():
    freqs = rope_frequencies(64)
    assert freqs.shape == (16, )
    assert torch.allclose(freqs[:4], torch.tensor([1.0, 0.5623413, 0.3162278, 0.1778279]), atol=1e-6)
    assert freqs[-1].item() == pytest.approx(1.778e-4, rel=1e-3)
    for patch_nums in (PATCH_NUMS_512, TINY_PATCH_NUMS):
        table = multiscale_rope_table(patch_nums, 64)
        assert table.dtype == torch.complex64
        assert torch.allclose(table, reference_rope_table(patch_nums, 64), atol=1e-5)
    assert torch.allclose(grid_rope_table(32, 64), reference_rope_table((32, ), 64), atol=1e-5)
    with pytest.raises(ValueError, match='divisible by 4'):
        rope_frequencies(30)


def test_apply_rope_rotates_interleaved_pairs_rows_first():
    head_dim = 8
    rows, cols = torch.tensor([0.0, 2.0, 5.0]), torch.tensor([3.0, 1.0, 4.0])
    x = torch.randn(2, 1, 3, head_dim)
    out = apply_rope(x, rope_table(rows, cols, head_dim))
    freqs = [10000.0**(-4.0 * j / head_dim) for j in range(head_dim // 4)]
    for token in range(3):
        angles = [rows[token] * f for f in freqs] + [cols[token] * f for f in freqs]
        for pair, angle in enumerate(angles):
            a, b = x[..., token, 2 * pair], x[..., token, 2 * pair + 1]
            cos, sin = math.cos(angle), math.sin(angle)
            assert torch.allclose(out[..., token, 2 * pair], a * cos - b * sin, atol=1e-5)
            assert torch.allclose(out[..., token, 2 * pair + 1], a * sin + b * cos, atol=1e-5)
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    head_dim = 64
    q, k = torch.randn(1, 1, 1, head_dim), torch.randn(1, 1, 1, head_dim)

    def score(query_pos, key_pos):
        rotated_q = apply_rope(q, rope_table(torch.tensor([query_pos[0]]), torch.tensor([query_pos[1]]), head_dim))
        rotated_k = apply_rope(k, rope_table(torch.tensor([key_pos[0]]), torch.tensor([key_pos[1]]), head_dim))
        return (rotated_q * rotated_k).sum().item()

    assert score((3.0, 7.0), (1.0, 2.0)) == pytest.approx(score((13.0, 27.0), (11.0, 22.0)), abs=1e-4)
    assert score((3.0, 7.0), (1.0, 2.0)) != pytest.approx(score((3.0, 7.0), (2.0, 1.0)), abs=1e-3)


def test_model_rope_buffers_and_mask_equal_reference_values():
    net = RestoreVARTransformer(**TINY)
    assert torch.allclose(net.rope, reference_rope_table(TINY_PATCH_NUMS, 32), atol=1e-6)
    assert torch.allclose(net.rope_cond, reference_rope_table((4, ), 32), atol=1e-6)
    assert torch.equal(net.block_causal_mask(), reference_additive_mask(TINY_PATCH_NUMS)[0, 0] == 0)
    assert torch.equal(net.official_buffers()['attn_bias_for_masking'], reference_additive_mask(TINY_PATCH_NUMS))
    assert torch.equal(net.level_ids, reference_levels(TINY_PATCH_NUMS))
    assert not any(name in net.state_dict() for name in ('rope', 'rope_cond', 'level_ids'))


# ------------------------------------------------------------------------------------------- initialisation
def test_initialisation_follows_the_official_rules():
    torch.manual_seed(0)
    depth, width = 4, 256
    net = RestoreVARTransformer(depth=depth, embed_dim=width, num_heads=4, vocab_size=512, z_channels=8,
                                patch_nums=TINY_PATCH_NUMS)
    std = math.sqrt(1 / (3 * width))
    block = net.blocks[1]
    assert block.attn.mat_qkv.weight.std().item() == pytest.approx(std, rel=0.05)
    assert block.cross_attn.kv_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    assert block.cross_attn.out_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    assert block.attn.proj.weight.std().item() == pytest.approx(std / math.sqrt(2 * depth), rel=0.05)
    assert block.ffn.fc2.weight.std().item() == pytest.approx(std / math.sqrt(2 * depth), rel=0.05)
    assert net.head.weight.std().item() == pytest.approx(0.02 * std, rel=0.05)
    assert net.class_emb.weight.std().item() == pytest.approx(std, rel=0.05)
    assert not net.head.bias.any() and not block.ffn.fc1.bias.any() and not block.attn.q_bias.any()
    assert torch.equal(block.cross_attn.norm_q.weight, torch.ones(width)) and not block.cross_attn.norm_q.bias.any()
    assert net.global_embed_gain.item() == 0.0 and block.cross_attn.gain.item() == 0.0
    assert torch.allclose(block.attn.scale_mul_1H11, torch.full((1, 4, 1, 1), math.log(4.0)))
    assert torch.allclose(block.cross_attn.scale_mul_1H11, torch.full((1, 4, 1, 1), math.log(4.0)))


def test_cond_gain_init_opens_every_condition_gate_from_the_start():
    kwargs = dict(depth=2, embed_dim=32, num_heads=2, vocab_size=64, z_channels=8, patch_nums=TINY_PATCH_NUMS)
    torch.manual_seed(0)
    official = RestoreVARTransformer(**kwargs)
    torch.manual_seed(0)
    opened = RestoreVARTransformer(cond_gain_init=1.0, **kwargs)
    gates = [opened.global_embed_gain] + [block.cross_attn.gain for block in opened.blocks]
    assert [gate.item() for gate in gates] == [1.0, 1.0, 1.0]
    for (name, mine), (_, theirs) in zip(opened.state_dict().items(), official.state_dict().items()):
        if not name.endswith('gain'):
            assert torch.equal(mine, theirs), name  # only the gates differ from the official initialisation
    vqvae = tiny_vqvae()
    teacher_input = teacher_input_for(vqvae, 2, seed=3)
    with torch.no_grad():
        logits_a, logits_b = (opened(random_cond(2, seed=s), teacher_input) for s in (4, 5))
    assert (logits_a - logits_b).abs().max() > 1e-4  # a fresh model already depends on the condition


# ------------------------------------------------------------------------------------------ forward behaviour
def test_zero_gates_make_outputs_independent_of_the_condition():
    vqvae = tiny_vqvae()
    net = tiny_transformer(gates=0.0)
    teacher_input = teacher_input_for(vqvae, 2, seed=3)
    cond_a, cond_b = random_cond(2, seed=4), random_cond(2, seed=5)
    with torch.no_grad():
        assert torch.equal(net(cond_a, teacher_input), net(cond_b, teacher_input))
        gen_a, gen_b = net.generate(cond_a, vqvae), net.generate(cond_b, vqvae)
    assert torch.equal(gen_a.last_hidden, gen_b.last_hidden)
    with torch.no_grad():
        net.blocks[1].cross_attn.gain.fill_(1.0)
        assert not torch.allclose(net(cond_a, teacher_input), net(cond_b, teacher_input), atol=1e-3)
        net.blocks[1].cross_attn.gain.fill_(0.0)
        net.global_embed_gain.fill_(1.0)
        assert not torch.allclose(net(cond_a, teacher_input), net(cond_b, teacher_input), atol=1e-3)


def reference_logits(net, cond, teacher_input):
    """Teacher-forced logits of the official ``VAR.forward`` (``models/var.py``), in explicit tensor algebra."""
    p = dict(net.named_parameters())
    batch, width, heads = cond.shape[0], net.embed_dim, net.num_heads
    head_dim = width // heads
    levels = reference_levels(net.patch_nums)
    rope, rope_cond = reference_rope_table(net.patch_nums, head_dim), reference_rope_table((net.grid, ), head_dim)

    def linear(x, name, bias=True):
        return x @ p[f'{name}.weight'].T + (p[f'{name}.bias'] if bias else 0)

    def layer_norm(x, eps, name=None):
        x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
        return x if name is None else x * p[f'{name}.weight'] + p[f'{name}.bias']

    def split(x):
        return x.reshape(batch, -1, heads, head_dim).transpose(1, 2)

    def rotate(x, table):
        pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], head_dim // 2, 2).contiguous())
        return torch.view_as_real(pairs * table).flatten(-2)

    def attention(q, k, v, log_temperature, q_table, k_table, mask=None):
        q = q / q.norm(dim=-1, keepdim=True) * torch.exp(torch.clamp(log_temperature, max=math.log(100)))
        scores = rotate(q, q_table) @ rotate(k / k.norm(dim=-1, keepdim=True), k_table).transpose(-1, -2)
        if mask is not None:
            scores = scores.masked_fill(~mask, -math.inf)
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, -1, width)

    tokens = linear(cond.flatten(2).transpose(1, 2), 'cond_proj4')
    cond_seq = linear(tokens, 'word_embed_cond') + p['lvl_embed_cond.weight'][0]
    sos = p['class_emb.weight'][net.num_classes] + p['global_embed_gain'] * linear(tokens.mean(1, keepdim=True),
                                                                                   'global_embed')
    x = torch.cat([sos, linear(teacher_input, 'word_embed')], dim=1) + p['lvl_embed.weight'][levels]
    mask = levels[:, None] >= levels[None, :]
    for index in range(net.depth):
        b = f'blocks.{index}.'
        zero = torch.zeros(width)
        qkv = layer_norm(x, 1e-6) @ p[b + 'attn.mat_qkv.weight'].T + torch.cat([p[b + 'attn.q_bias'], zero,
                                                                                p[b + 'attn.v_bias']])
        q, k, v = (split(t) for t in qkv.split(width, dim=-1))
        x = x + linear(attention(q, k, v, p[b + 'attn.scale_mul_1H11'], rope, rope, mask), b + 'attn.proj')
        hidden = linear(layer_norm(x, 1e-6), b + 'ffn.fc1')
        gelu = 0.5 * hidden * (1 + torch.tanh(math.sqrt(2 / math.pi) * (hidden + 0.044715 * hidden**3)))
        x = x + linear(gelu, b + 'ffn.fc2')
        q = split(linear(layer_norm(x, 1e-5, b + 'cross_attn.norm_q'), b + 'cross_attn.q_proj', bias=False))
        kv = linear(layer_norm(cond_seq, 1e-5, b + 'cross_attn.norm_kv'), b + 'cross_attn.kv_proj', bias=False)
        k, v = (split(t) for t in kv.split(width, dim=-1))
        attended = attention(q, k, v, p[b + 'cross_attn.scale_mul_1H11'], rope, rope_cond)
        x = x + p[b + 'cross_attn.gain'] * linear(attended, b + 'cross_attn.out_proj')
    return linear(layer_norm(x, 1e-6), 'head')


def test_forward_equals_the_reference_computation():
    vqvae = tiny_vqvae()
    net = tiny_transformer(gates=1.0)
    with torch.no_grad():
        for parameter in (net.blocks[0].attn.q_bias, net.blocks[1].attn.v_bias, net.head.bias):
            parameter.normal_()
        net.blocks[0].attn.scale_mul_1H11.copy_(torch.tensor([1.0, 5.0]).view(1, 2, 1, 1))  # 5 > log 100: clamped
    cond, teacher_input = random_cond(2, seed=16), teacher_input_for(vqvae, 2, seed=17)
    with torch.no_grad():
        assert torch.allclose(net(cond, teacher_input), reference_logits(net, cond, teacher_input), atol=1e-4)


def test_block_causal_mask_hides_later_scales():
    vqvae = tiny_vqvae()
    net = tiny_transformer(gates=1.0)
    cond = random_cond(2, seed=6)
    teacher_input = teacher_input_for(vqvae, 2, seed=7)
    changed = teacher_input.clone()
    changed[:, 13:] += torch.randn_like(changed[:, 13:])  # tokens of the last scale (14..29, input rows 13..28)
    with torch.no_grad():
        before, after = net(cond, teacher_input), net(cond, changed)
    assert torch.allclose(before[:, :14], after[:, :14], atol=1e-5)
    assert not torch.allclose(before[:, 14:], after[:, 14:], atol=1e-3)


def test_gradients_reach_every_parameter():
    vqvae = tiny_vqvae()
    net = tiny_transformer(gates=1.0).train()
    generator = torch.Generator().manual_seed(8)
    indices = [torch.randint(0, 64, (2, pn * pn), generator=generator) for pn in TINY_PATCH_NUMS]
    logits = net(random_cond(2, seed=9), vqvae.quantize.teacher_input(indices))
    F.cross_entropy(logits.flatten(0, 1), torch.cat(indices, dim=1).flatten()).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize('batch', [1, 3])
def test_kv_cached_generation_matches_teacher_forcing_and_full_recompute(batch):
    vqvae = tiny_vqvae()
    net = tiny_transformer(gates=1.0)
    cond = random_cond(batch, seed=10)
    with torch.no_grad():
        cached = net.generate(cond, vqvae)
        recomputed = net.generate(cond, vqvae, use_kv_cache=False)
        logits = net(cond, vqvae.quantize.teacher_input(cached.indices))
    assert [tuple(idx.shape) for idx in cached.indices] == [(batch, pn * pn) for pn in TINY_PATCH_NUMS]
    assert cached.f_hat.shape == (batch, 8, 4, 4) and cached.last_hidden.shape == (batch, 30, 64)
    assert torch.equal(logits.argmax(dim=-1), torch.cat(cached.indices, dim=1))
    assert torch.allclose(net.logits(cached.last_hidden), logits, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(cached.indices, recomputed.indices))
    assert torch.allclose(cached.last_hidden, recomputed.last_hidden, atol=1e-5)
    assert torch.allclose(cached.f_hat, vqvae.quantize.indices_to_fhat(cached.indices), atol=1e-5)


def test_batched_generation_equals_per_image_generation():
    vqvae = tiny_vqvae()
    net = tiny_transformer(gates=1.0)
    cond = random_cond(3, seed=11)
    with torch.no_grad():
        batched = net.generate(cond, vqvae)
        singles = [net.generate(cond[i:i + 1], vqvae) for i in range(3)]
    for i, single in enumerate(singles):
        assert all(torch.equal(b[i:i + 1], s) for b, s in zip(batched.indices, single.indices))
        assert torch.allclose(batched.f_hat[i:i + 1], single.f_hat, atol=1e-5)
        assert torch.allclose(batched.last_hidden[i:i + 1], single.last_hidden, atol=1e-5)
    assert not all(torch.equal(singles[0].indices[-1], s.indices[-1]) for s in singles[1:])


def test_bad_inputs_raise_clear_errors():
    net = tiny_transformer()
    with pytest.raises(ValueError, match='cond must be'):
        net(torch.zeros(1, 8, 5, 5), torch.zeros(1, 29, 8))
    with pytest.raises(ValueError, match='teacher_input'):
        net(torch.zeros(1, 8, 4, 4), torch.zeros(1, 28, 8))
    other = MultiScaleVQVAE(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1), num_res_blocks=1, patch_nums=(1, 2, 4))
    with pytest.raises(ValueError, match='does not match'):
        net.generate(torch.zeros(1, 8, 4, 4), other)
    with pytest.raises(ValueError, match='divisible by 4'):
        RestoreVARTransformer(depth=2, embed_dim=60, num_heads=2)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_official_layout_checkpoint_loads_strictly(tmp_path):
    transformer, refiner = RestoreVARTransformer(**TINY), LatentRefinerTransformer(**TINY_REFINER)
    state = official_layout_state(transformer, refiner, torch.Generator().manual_seed(12))
    path = tmp_path / 'restorevar.pth'
    torch.save(state, path)
    report = load_official_restorevar(path, transformer, refiner)
    assert report['layout'] == 'flat'
    assert sorted(report['dropped_buffers']) == sorted(
        ['freqs_cis', 'freqs_cis_cross', 'attn_bias_for_masking', 'lvl_1L', 'lvl_1L_cond',
         'blocks.0.attn.zero_k_bias', 'blocks.1.attn.zero_k_bias'])
    assert report['refiner_keys'] == len(refiner.state_dict()) and report['skipped'] == []
    for key, value in transformer.state_dict().items():
        assert torch.equal(value, state[key]), key
    for key, value in refiner.state_dict().items():
        assert torch.equal(value, state[f'vae_refiner.{key}']), key

    fresh = RestoreVARTransformer(**TINY)
    skipped = load_official_restorevar(path, fresh)['skipped']
    assert len(skipped) == len(refiner.state_dict()) and all(k.startswith('vae_refiner.') for k in skipped)


def test_official_checkpoint_of_another_configuration_is_rejected(tmp_path):
    transformer, refiner = RestoreVARTransformer(**TINY), LatentRefinerTransformer(**TINY_REFINER)
    state = official_layout_state(transformer, refiner, torch.Generator().manual_seed(13))
    state['freqs_cis'] = reference_rope_table(TINY_PATCH_NUMS, 32, base=500.0)
    torch.save(state, tmp_path / 'other_rope.pth')
    with pytest.raises(ValueError, match='freqs_cis .* another configuration'):
        load_official_restorevar(tmp_path / 'other_rope.pth', transformer, refiner)
    state = official_layout_state(transformer, refiner, torch.Generator().manual_seed(13))
    state.pop('head.bias')
    torch.save(state, tmp_path / 'no_head_bias.pth')
    with pytest.raises(ValueError, match='missing .*head.bias'):
        load_official_restorevar(tmp_path / 'no_head_bias.pth', transformer, refiner)
    with pytest.raises(FileNotFoundError, match='restorevar.pth'):
        load_official_restorevar(tmp_path / 'restorevar.pth', transformer, refiner)


def test_official_vqvae_checkpoint_loads_strictly(tmp_path):
    source = tiny_vqvae()
    state = {key: value + 1 for key, value in source.state_dict().items()}
    state['quantize.ema_vocab_hit_SV'] = torch.ones(10, 64)  # another scale count, as in VAR's own loader
    torch.save(state, tmp_path / 'vae_tiny.pth')
    target = MultiScaleVQVAE(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1), num_res_blocks=1,
                             patch_nums=TINY_PATCH_NUMS)
    report = load_network(target, tmp_path / 'vae_tiny.pth')
    assert report['layout'] == 'flat' and report['loaded'] == len(state) - 1
    assert report['reshaped'] == ['quantize.ema_vocab_hit_SV'] and report['missing'] == report['unexpected'] == []
    for key, value in target.state_dict().items():
        if key != 'quantize.ema_vocab_hit_SV':
            assert torch.equal(value, state[key]), key
    state.pop('post_quant_conv.bias')
    torch.save(state, tmp_path / 'vae_partial.pth')
    with pytest.raises(ValueError, match='post_quant_conv.bias'):
        load_network(target, tmp_path / 'vae_partial.pth')
    with pytest.raises(FileNotFoundError, match='vae_restorevar.ckpt'):
        load_network(target, tmp_path / 'vae_restorevar.ckpt')


def test_load_var_pretrained_keeps_shared_weights_and_drops_the_rest(tmp_path, basicsr_log):
    net = RestoreVARTransformer(**TINY)
    before = {key: value.clone() for key, value in net.state_dict().items()}
    state = fake_base_var_state(net, levels=10, generator=torch.Generator().manual_seed(14))
    torch.save(state, tmp_path / 'var_tiny.pth')
    report = load_var_pretrained(tmp_path / 'var_tiny.pth', net)

    after = net.state_dict()
    for key in report['loaded']:
        if key != 'lvl_embed.weight':
            assert torch.equal(after[key], state[key]), key
    assert torch.equal(after['lvl_embed.weight'], state['lvl_embed.weight'][:4])
    assert set(report['fresh']) == {key for key in after if key not in state}
    assert any(key.startswith('blocks.1.cross_attn.') for key in report['fresh'])
    for key in report['fresh']:
        assert torch.equal(after[key], before[key]), key
    expected_dropped = {'pos_start', 'pos_1LC', 'attn_bias_for_masking', 'lvl_1L', 'head_nm.ada_lin.1.weight',
                        'head_nm.ada_lin.1.bias'}
    for index in range(2):
        expected_dropped |= {f'blocks.{index}.ada_lin.1.weight', f'blocks.{index}.ada_lin.1.bias',
                             f'blocks.{index}.attn.zero_k_bias'}
    assert set(report['dropped']) == expected_dropped
    assert report['notes'] and 'lvl_embed' in report['notes'][0]
    messages = '\n'.join(record.getMessage() for record in basicsr_log)
    assert 'pos_1LC' in messages and 'blocks.0.ada_lin.1.weight' in messages
    assert 'blocks.0.cross_attn.gain' in messages and 'lvl_embed' in messages


def test_load_var_pretrained_rejects_foreign_files(tmp_path):
    net = RestoreVARTransformer(**TINY)
    state = fake_base_var_state(net, levels=4, generator=torch.Generator().manual_seed(15))
    state['vae_refiner.proj_out.weight'] = torch.zeros(8, 32)
    torch.save(state, tmp_path / 'foreign.pth')
    with pytest.raises(ValueError, match='unknown keys'):
        load_var_pretrained(tmp_path / 'foreign.pth', net)
    state.pop('vae_refiner.proj_out.weight')
    state.pop('blocks.1.ffn.fc1.weight')
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(ValueError, match='blocks.1.ffn.fc1.weight'):
        load_var_pretrained(tmp_path / 'partial.pth', net)
    with pytest.raises(FileNotFoundError):
        load_var_pretrained(tmp_path / 'var_d16.pth', net)


def test_condition_and_start_tokens_are_embedded_in_fp32_under_autocast():
    vqvae, net = tiny_vqvae(), tiny_transformer(gates=0.5)
    cond = torch.randn(2, 8, 4, 4)
    teacher = teacher_input_for(vqvae, 2, seed=5)
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        start_tokens, cond_kvs = net._prepare_condition(cond)
        logits = net(cond, teacher)
    assert start_tokens.dtype == torch.float32
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, net(cond, teacher), atol=0.5, rtol=0.1)


def test_greedy_indices_are_chosen_in_fp32_under_bf16_autocast():
    net = tiny_transformer(gates=0.5)
    hidden = torch.randn(2, 30, net.embed_dim)
    hidden_bf16 = hidden.bfloat16()
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        chosen = net.greedy_indices(hidden_bf16)
        rounded = net.logits(hidden_bf16)  # the bf16 head, for contrast
    exact = net.logits(hidden_bf16.float())
    assert rounded.dtype == torch.float32 and not torch.equal(rounded, exact)  # the bf16 head rounds the logits
    assert chosen.dtype == torch.int64 and chosen.shape == (2, 30)
    assert torch.equal(chosen, exact.argmax(dim=-1))
