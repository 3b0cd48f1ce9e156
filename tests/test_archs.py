"""Every arch this package registers, run through the same checks (timm's every-model test).

Convention for a new arch (``restorevar_plugin/archs/<name>_arch.py``): the registered class defines

* ``TINY_CONFIG``: a dict of constructor keyword arguments building a seconds-fast instance;
* ``example_inputs(self, batch_size=2, generator=None)``: a tuple of valid :meth:`forward` inputs for the
  instance's own configuration.

The arch then joins every test below automatically (the list comes from BasicSR's ``ARCH_REGISTRY``):
finite forward outputs, gradients reaching every trainable parameter (none reaching frozen ones), eval-mode
determinism, batch consistency (item i of a batch equals that item alone, to 1e-5) and a state-dict round
trip through a checkpoint file.
Outputs may be a tensor or a tuple / dict of tensors; tensors whose first dimension is the batch are
compared per item, the others (batch-mean losses) are left out of the batch check.
"""
import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from restorevar_plugin.checkpoints import load_network
from restorevar_plugin.registry_utils import owner_module, registered_names

OURS = sorted(name for name in registered_names('arch') if owner_module('arch', name).startswith('restorevar_plugin.'))


def build(name, seed=0):
    """The registered arch ``name`` at its ``TINY_CONFIG``, built from a YAML-style option dict."""
    torch.manual_seed(seed)
    net = build_network(dict(ARCH_REGISTRY.get(name).TINY_CONFIG, type=name))
    if name == 'RestoreVARTransformer':  # zero-initialised gates would cut the condition's gradients
        with torch.no_grad():
            net.global_embed_gain.fill_(0.5)
            for block in net.blocks:
                block.cross_attn.gain.fill_(0.5)
    return net


def inputs_for(net, batch_size=2, seed=0):
    return net.example_inputs(batch_size, torch.Generator().manual_seed(seed))


def tensors_of(result):
    """Every tensor of an arch's output, in a fixed order."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [tensor for key in sorted(result) for tensor in tensors_of(result[key])]
    if isinstance(result, (tuple, list)):
        return [tensor for item in result for tensor in tensors_of(item)]
    return []


def test_every_registered_arch_has_a_tiny_config_and_example_inputs():
    assert len(OURS) >= 4
    for name in OURS:
        cls = ARCH_REGISTRY.get(name)
        assert isinstance(getattr(cls, 'TINY_CONFIG', None), dict), f'{name} has no TINY_CONFIG dict'
        assert callable(getattr(cls, 'example_inputs', None)), f'{name} has no example_inputs method'


@pytest.mark.parametrize('name', OURS)
def test_arch_forward_and_backward_reach_every_parameter(name):
    net = build(name).train()
    outputs = tensors_of(net(*inputs_for(net)))
    assert outputs and all(torch.isfinite(output).all() for output in outputs)
    sum(output.float().mean() for output in outputs).backward()
    for param_name, param in net.named_parameters():
        if not param.requires_grad:  # frozen by design (AWRaCLe's CLIP)
            assert param.grad is None, f'{name}.{param_name} is frozen but got a gradient'
            continue
        assert param.grad is not None, f'{name}.{param_name} got no gradient'
        assert torch.isfinite(param.grad).all(), f'{name}.{param_name} has a non-finite gradient'


@pytest.mark.parametrize('name', OURS)
def test_eval_mode_is_deterministic(name):
    net = build(name).eval()
    inputs = inputs_for(net)
    with torch.no_grad():
        first, second = tensors_of(net(*inputs)), tensors_of(net(*inputs))
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize('name', OURS)
def test_each_item_of_a_batch_equals_that_item_alone(name):
    net = build(name).eval()
    batch_size = 3
    inputs = inputs_for(net, batch_size)
    with torch.no_grad():
        batched = tensors_of(net(*inputs))
        per_item = [tensors_of(net(*(tensor[i:i + 1] for tensor in inputs))) for i in range(batch_size)]
    compared = 0
    for position, output in enumerate(batched):
        if output.ndim == 0 or output.shape[0] != batch_size:
            continue
        for i in range(batch_size):
            torch.testing.assert_close(output[i:i + 1], per_item[i][position], atol=1e-5, rtol=1e-5)
        compared += 1
    assert compared > 0, f'{name}: no output has a batch dimension'


@pytest.mark.parametrize('name', OURS)
def test_state_dict_round_trip_through_a_checkpoint_file(name, tmp_path):
    source, target = build(name, seed=0).eval(), build(name, seed=1).eval()
    inputs = inputs_for(target)
    assert any(not torch.equal(value, target.state_dict()[key]) for key, value in source.state_dict().items())
    torch.save({'params': source.state_dict()}, tmp_path / 'net.pth')
    report = load_network(target, tmp_path / 'net.pth')
    assert report['layout'] == 'basicsr' and report['missing'] == report['unexpected'] == []
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    with torch.no_grad():
        for a, b in zip(tensors_of(source(*inputs)), tensors_of(target(*inputs))):
            assert torch.equal(a, b)
