"""Prepared Linear weights for inference: oneDNN prepacking on a CPU, reduced-precision casts, the cache."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.restorevar import tiny_test_model
from restorevar_plugin.models.inference_linears import InferenceLinearWeights, PrepackedWeight
from restorevar_plugin.models.inference_options import prepacked_linears_requested

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='this torch build has no oneDNN')


def layers(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 16, bias=False)).eval()


@needs_onednn
@pytest.mark.parametrize('shape', [(5, 24), (2, 7, 24), (1, 1, 24)])
@torch.no_grad()
def test_prepacked_product_equals_f_linear_in_fp32(shape):
    layer = nn.Linear(24, 40)
    x = torch.randn(shape)
    weight = PrepackedWeight(layer.weight, torch.float32, rows_hint=16)
    out = F.linear(x, weight, layer.bias)
    assert out.shape == (*shape[:-1], 40) and out.dtype == torch.float32
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(F.linear(x, weight), F.linear(x, layer.weight), atol=1e-5, rtol=1e-5)
    # a 1-D input (the condition's LayerNorm bias) and every other op see the dense float32 weight
    assert torch.equal(F.linear(x[(0, ) * (x.dim() - 1)], weight), F.linear(x[(0, ) * (x.dim() - 1)], layer.weight))
    doubled = weight * 2
    assert type(doubled) is torch.Tensor and torch.equal(doubled, layer.weight * 2)
    assert weight.shape == layer.weight.shape and weight.dtype == torch.float32


@needs_onednn
@torch.no_grad()
def test_fp32_products_outside_the_measured_row_range_keep_f_linear():
    layer = nn.Linear(24, 40)
    fp32 = PrepackedWeight(layer.weight, torch.float32, rows_hint=16)
    bf16 = PrepackedWeight(layer.weight, torch.bfloat16, rows_hint=16)
    rows = {shape: fp32._runs_prepacked(torch.zeros(shape)) for shape in [(1, 24), (2, 24), (1, 399, 24), (400, 24),
                                                                           (2, 300, 24), (24, )]}
    assert rows == {(1, 24): False, (2, 24): True, (1, 399, 24): True, (400, 24): False, (2, 300, 24): False,
                    (24, ): False}
    assert bf16._runs_prepacked(torch.zeros(1, 24)) and bf16._runs_prepacked(torch.zeros(4000, 24))
    for shape in [(1, 24), (3, 200, 24)]:  # the plain product, bit for bit
        x = torch.randn(shape)
        assert torch.equal(F.linear(x, fp32, layer.bias), F.linear(x, layer.weight, layer.bias))


@needs_onednn
@torch.no_grad()
def test_prepacked_bf16_product_matches_autocast():
    layer = nn.Linear(64, 96)
    x = torch.randn(3, 10, 64)
    weight = PrepackedWeight(layer.weight, torch.bfloat16, rows_hint=16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = layer(x)
        out = F.linear(x, weight, layer.bias)
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), atol=2e-2, rtol=1e-2)


@needs_onednn
@torch.no_grad()
def test_use_swaps_prepared_weights_in_and_puts_the_parameters_back():
    net = layers()
    parameters = dict(net.named_parameters())
    x = torch.randn(6, 24)
    expected = net(x)
    weights = InferenceLinearWeights()
    with weights.use([net]):
        assert isinstance(net[0].weight, PrepackedWeight) and isinstance(net[2].weight, PrepackedWeight)
        assert net[0].bias is parameters['0.bias']  # a prepacked layer keeps its float32 bias
        packed_first = net[0].weight
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)
    assert dict(net.named_parameters()) == parameters  # the same Parameter objects
    assert all(type(p) is nn.Parameter for p in net.parameters())
    with weights.use([net, net[0]]):  # prepared once per layer and kept
        assert net[0].weight is packed_first
    assert dict(net.named_parameters()) == parameters


@needs_onednn
@torch.no_grad()
def test_changed_weights_are_prepared_again():
    net = layers()
    x = torch.randn(4, 24)
    weights = InferenceLinearWeights()
    with weights.use([net]):
        before = net(x)
    net[2].weight.mul_(-1)  # an optimizer step (in place)
    with weights.use([net]):
        after = net(x)
    torch.testing.assert_close(after, -before, atol=1e-5, rtol=1e-5)
    net.load_state_dict(layers(seed=1).state_dict())  # reloading
    with weights.use([net]):
        reloaded = net(x)
    torch.testing.assert_close(reloaded, layers(seed=1)(x), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_without_prepacking_fp32_is_untouched_and_reduced_precision_is_cast_once(monkeypatch):
    net = layers()
    weight = net[0].weight
    weights = InferenceLinearWeights()
    with weights.use([net], prepack=False):
        assert net[0].weight is weight
    with weights.use([net], torch.bfloat16, prepack=False):
        cast = net[0].weight
        assert cast.dtype == torch.bfloat16 and net[0].bias.dtype == torch.bfloat16
        assert torch.equal(cast, weight.to(torch.bfloat16))
    with weights.use([net], torch.bfloat16, prepack=False):
        assert net[0].weight is cast
    assert net[0].weight is weight and net[0].bias.dtype == torch.float32
    monkeypatch.setattr(torch.backends.mkldnn, 'is_available', lambda: False)  # a CPU build without oneDNN
    with InferenceLinearWeights().use([net]):
        assert net[0].weight is weight


def test_parameters_come_back_when_the_body_raises():
    net = layers()
    weight = net[0].weight
    with pytest.raises(RuntimeError, match='inside'):
        with InferenceLinearWeights().use([net], torch.bfloat16, prepack=False):
            raise RuntimeError('inside')
    assert net[0].weight is weight


def test_prepacked_linears_option_is_checked():
    assert prepacked_linears_requested({}) is True
    assert prepacked_linears_requested({'prepacked_linears': False}) is False
    with pytest.raises(ValueError, match='val.prepacked_linears must be true or false'):
        prepacked_linears_requested({'prepacked_linears': 'yes'})


@needs_onednn
@torch.no_grad()
def test_model_restores_the_same_with_and_without_prepacked_linears(tmp_path):
    model = tiny_test_model(tmp_path)
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    seen = []
    hook = model.net_g.blocks[0].ffn.fc1.register_forward_pre_hook(
        lambda module, inputs: seen.append(type(module.weight)))
    packed = model.restore(img)
    hook.remove()
    assert seen and set(seen) == {PrepackedWeight}
    assert all(type(p) is nn.Parameter for p in model.net_g.parameters())
    model.opt['val']['prepacked_linears'] = False
    plain = model.restore(img)
    torch.testing.assert_close(packed, plain, atol=1e-4, rtol=0)
