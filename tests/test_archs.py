"""Every arch this package registers: builds from a tiny config, runs forward, gradients reach every parameter."""
import pytest
import torch
from basicsr.archs import build_network

from restorevar_plugin.archs import awracle_arch, promptir_arch
from restorevar_plugin.registry_utils import owner_module, registered_names

PATCH_NUMS = [1, 2, 4, 8]


def vqvae_inputs():
    return (torch.rand(2, 3, 16, 16) * 2 - 1, )


def transformer_inputs():
    generator = torch.Generator().manual_seed(0)
    teacher_tokens = sum(pn * pn for pn in PATCH_NUMS) - 1
    return torch.randn(2, 8, 8, 8, generator=generator), torch.randn(2, teacher_tokens, 8, generator=generator)


def refiner_inputs():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2, 64, 8, generator=generator), torch.randn(2, 85, 32, generator=generator)


def discriminator_inputs():
    return (torch.rand(2, 3, 64, 64) * 2 - 1, )


def image_inputs():
    return (torch.rand(2, 3, 16, 16), )


def in_context_inputs():
    return torch.rand(2, 3, 16, 16), torch.rand(2, 3, 40, 48), torch.rand(2, 3, 40, 48)


TINY = {
    'MultiScaleVQVAE': (dict(vocab_size=64, z_channels=8, ch=32, ch_mult=[1, 2], num_res_blocks=1,
                             patch_nums=PATCH_NUMS), vqvae_inputs),
    'RestoreVARTransformer': (dict(depth=2, embed_dim=32, num_heads=2, vocab_size=64, z_channels=8,
                                   patch_nums=PATCH_NUMS), transformer_inputs),
    'LatentRefinerTransformer': (dict(seq_len=64, seq_len_cond=85, in_dim=8, in_dim_cond=32, out_dim=8, dim=32,
                                      depth=2, heads=2, mlp_dim=64), refiner_inputs),
    'PatchGANDiscriminator': (dict(ndf=8, n_layers=2), discriminator_inputs),
    'PromptIR': (promptir_arch.TINY_CONFIG, image_inputs),
    'AWRaCLe': (awracle_arch.TINY_CONFIG, in_context_inputs),
}
OURS = [name for name in registered_names('arch') if owner_module('arch', name).startswith('restorevar_plugin.')]


def test_every_registered_arch_has_a_tiny_config():
    assert sorted(OURS) == sorted(TINY)


def outputs_of(result):
    """The tensors of an arch's output (the VQVAE returns ``(reconstruction, losses)``)."""
    if isinstance(result, torch.Tensor):
        return [result]
    reconstruction, losses = result
    return [reconstruction, losses['vq_loss']]


@pytest.mark.parametrize('name', sorted(TINY))
def test_arch_forward_and_backward_reach_every_parameter(name):
    kwargs, make_inputs = TINY[name]
    torch.manual_seed(0)
    net = build_network(dict(kwargs, type=name)).train()
    if name == 'RestoreVARTransformer':  # zero-initialised gates would cut the condition's gradients
        with torch.no_grad():
            net.global_embed_gain.fill_(0.5)
            for block in net.blocks:
                block.cross_attn.gain.fill_(0.5)
    outputs = outputs_of(net(*make_inputs()))
    assert all(torch.isfinite(output).all() for output in outputs)
    sum(output.float().mean() for output in outputs).backward()
    for param_name, param in net.named_parameters():
        if not param.requires_grad:  # frozen by design (AWRaCLe's CLIP)
            assert param.grad is None, f'{name}.{param_name} is frozen but got a gradient'
            continue
        assert param.grad is not None, f'{name}.{param_name} got no gradient'
        assert torch.isfinite(param.grad).all(), f'{name}.{param_name} has a non-finite gradient'
