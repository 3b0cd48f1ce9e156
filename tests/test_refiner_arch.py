"""Latent Refiner Transformer: official layout and counts, reference forward, residual, ablation, errors."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from restorevar_plugin.archs.refiner_arch import (
    OFFICIAL_INIT_STD,
    LatentRefinerTransformer,
)

TINY = dict(seq_len=16, seq_len_cond=30, in_dim=8, in_dim_cond=64, out_dim=8, dim=32, depth=2, heads=2, mlp_dim=64)


def expected_official_shapes():
    """Facts sheet 4.3: the vae_refiner.* keys of restorevar.pth (prefix removed), with shapes."""
    shapes = {
        'pos_embedding': (1, 1024, 384), 'pos_embedding_cond': (1, 2240, 384),
        'proj_in.weight': (384, 32), 'proj_in_cond.weight': (384, 1024),
        'norm_in.weight': (32, ), 'norm_in.bias': (32, ),
        'norm_in_cond.weight': (1024, ), 'norm_in_cond.bias': (1024, ),
        'transformer.norm.weight': (384, ), 'transformer.norm.bias': (384, ),
        'proj_out.weight': (32, 384),
    }
    layer = {
        '0.norm.weight': (384, ), '0.norm.bias': (384, ), '0.to_qkv.weight': (1152, 384),
        '0.to_out.0.weight': (384, 384), '0.to_out.0.bias': (384, ),
        '1.net.0.weight': (384, ), '1.net.0.bias': (384, ), '1.net.1.weight': (768, 384), '1.net.1.bias': (768, ),
        '1.net.4.weight': (384, 768), '1.net.4.bias': (384, ),
        '2.norm_q.weight': (384, ), '2.norm_q.bias': (384, ), '2.norm_kv.weight': (384, ), '2.norm_kv.bias': (384, ),
        '2.to_q.weight': (384, 384), '2.to_kv.weight': (768, 384), '2.to_out.weight': (384, 384),
        '2.to_out.bias': (384, ),
    }
    for index in range(12):
        shapes.update({f'transformer.layers.{index}.{key}': shape for key, shape in layer.items()})
    return shapes


def test_full_size_counts_and_official_key_layout():
    with torch.device('meta'):
        refiner = LatentRefinerTransformer()
        ablation = LatentRefinerTransformer(cross_attention=False)
    shapes = {key: tuple(value.shape) for key, value in refiner.state_dict().items()}
    assert shapes == expected_official_shapes() and len(shapes) == 239
    assert sum(p.numel() for p in refiner.parameters()) == 22_967_616
    assert sum(p.numel() for p in ablation.parameters()) == 14_611_264
    cross_attention = re.compile(r'transformer\.layers\.\d+\.2\.')
    without_condition = {key for key in shapes if 'cond' not in key and not cross_attention.match(key)}
    assert set(ablation.state_dict()) == without_condition


def reference_refine(net, x, cond):
    """The official ``Refiner.forward`` (``models/vae_refiner_rope.py``) written out with explicit tensor algebra."""
    p = dict(net.named_parameters())
    heads = 2

    def linear(t, name, bias=True):
        return t @ p[f'{name}.weight'].T + (p[f'{name}.bias'] if bias else 0)

    def layer_norm(t, name):
        t = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-5)
        return t * p[f'{name}.weight'] + p[f'{name}.bias']

    def attend(q, k, v):
        q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
        out = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v
        return out.transpose(1, 2).flatten(2)

    h = linear(layer_norm(x, 'norm_in'), 'proj_in', bias=False) + p['pos_embedding']
    c = linear(layer_norm(cond, 'norm_in_cond'), 'proj_in_cond', bias=False)
    c = c + p['pos_embedding_cond'][:, :cond.shape[1]]
    for index in range(2):
        b = f'transformer.layers.{index}.'
        q, k, v = linear(layer_norm(h, b + '0.norm'), b + '0.to_qkv', bias=False).chunk(3, dim=-1)
        h = h + linear(attend(q, k, v), b + '0.to_out.0')
        hidden = linear(layer_norm(h, b + '1.net.0'), b + '1.net.1')
        h = h + linear(0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2))), b + '1.net.4')
        q = linear(layer_norm(h, b + '2.norm_q'), b + '2.to_q', bias=False)
        k, v = linear(layer_norm(c, b + '2.norm_kv'), b + '2.to_kv', bias=False).chunk(2, dim=-1)
        h = h + linear(attend(q, k, v), b + '2.to_out')
    return linear(layer_norm(h, 'transformer.norm'), 'proj_out', bias=False) + x


def randomised(net, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.3)
    return net


def test_forward_equals_the_reference_computation():
    net = randomised(LatentRefinerTransformer(**TINY), seed=0)
    x, cond = torch.randn(3, 16, 8), torch.randn(3, 21, 64)
    with torch.no_grad():
        assert torch.allclose(net(x, cond), reference_refine(net, x, cond), atol=1e-4)


def test_global_residual_and_condition_use():
    net = randomised(LatentRefinerTransformer(**TINY), seed=1)
    x = torch.randn(2, 16, 8)
    cond_a, cond_b = torch.randn(2, 30, 64), torch.randn(2, 30, 64)
    with torch.no_grad():
        assert not torch.allclose(net(x, cond_a), net(x, cond_b), atol=1e-3)
        net.proj_out.weight.zero_()
        assert torch.equal(net(x, cond_a), x)


def test_ablation_ignores_the_condition():
    net = randomised(LatentRefinerTransformer(cross_attention=False, **TINY), seed=2)
    x = torch.randn(2, 16, 8)
    with torch.no_grad():
        out = net(x)
        assert torch.equal(out, net(x, torch.randn(2, 30, 64)))
    assert out.shape == x.shape and not torch.allclose(out, x, atol=1e-3)


def test_initialisation_is_the_official_one():
    torch.manual_seed(0)
    net = LatentRefinerTransformer(seq_len=256, seq_len_cond=512, in_dim_cond=256, depth=1)
    layer = net.transformer.layers[0]
    for weight in (layer[0].to_qkv.weight, layer[1].net[1].weight, layer[2].to_kv.weight, net.proj_in_cond.weight):
        assert weight.std().item() == pytest.approx(OFFICIAL_INIT_STD, rel=0.05)
    assert OFFICIAL_INIT_STD == pytest.approx(0.01804, abs=1e-5)
    assert net.pos_embedding.std().item() == pytest.approx(0.02, rel=0.05)
    assert net.pos_embedding_cond.std().item() == pytest.approx(0.02, rel=0.05)
    assert not layer[0].to_out[0].bias.any() and not layer[1].net[4].bias.any()
    assert torch.equal(layer[2].norm_q.weight, torch.ones(384)) and not net.norm_in.bias.any()


def test_gradients_reach_every_parameter():
    net = randomised(LatentRefinerTransformer(**TINY), seed=3)
    out = net(torch.randn(2, 16, 8), torch.randn(2, 30, 64))
    F.l1_loss(out, torch.randn(2, 16, 8)).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_bad_inputs_raise_clear_errors():
    net = LatentRefinerTransformer(**TINY)
    with pytest.raises(ValueError, match='f_hat_tokens must be'):
        net(torch.zeros(1, 15, 8), torch.zeros(1, 30, 64))
    with pytest.raises(ValueError, match='last_hidden must be'):
        net(torch.zeros(1, 16, 8), torch.zeros(1, 31, 64))
    with pytest.raises(ValueError, match='last_hidden must be'):
        net(torch.zeros(1, 16, 8))
    with pytest.raises(ValueError, match='out_dim'):
        LatentRefinerTransformer(in_dim=8, out_dim=32)
