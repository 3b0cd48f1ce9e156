"""Tiny RestoreVAR components shared by the transformer, refiner and fast-path tests (seeded, eval mode)."""
import torch

from restorevar_plugin.archs.restorevar_arch import RestoreVARTransformer
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE

TINY_PATCH_NUMS = (1, 2, 3, 4)
TINY = dict(depth=2, embed_dim=64, num_heads=2, vocab_size=64, z_channels=8, patch_nums=TINY_PATCH_NUMS)
TINY_REFINER = dict(seq_len=16, seq_len_cond=30, in_dim=8, in_dim_cond=64, out_dim=8, dim=32, depth=2, heads=2,
                    mlp_dim=64)


def tiny_vqvae():
    """A seeded tiny VQVAE on ``TINY_PATCH_NUMS`` in eval mode."""
    torch.manual_seed(0)
    return MultiScaleVQVAE(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1), num_res_blocks=1,
                           patch_nums=TINY_PATCH_NUMS).eval()


def tiny_transformer(seed=1, gates=0.0):
    """Tiny transformer in eval mode; ``gates`` sets every cross-attention gain and the SOS global gain.

    Every Linear weight is re-drawn at std ``fan_in ** -0.5`` (the scale of a trained model rather than the
    small official init) so that the condition matters and greedy decisions differ between images.
    """
    torch.manual_seed(seed)
    net = RestoreVARTransformer(**TINY).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
        net.global_embed_gain.fill_(gates)
        for block in net.blocks:
            block.cross_attn.gain.fill_(gates)
    return net


def random_cond(batch, seed):
    """A seeded ``(batch, 8, 4, 4)`` condition latent."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, 4, 4, generator=generator)


def teacher_input_for(vqvae, batch, seed):
    """Teacher-forcing input of seeded random indices on ``TINY_PATCH_NUMS``."""
    generator = torch.Generator().manual_seed(seed)
    indices = [torch.randint(0, 64, (batch, pn * pn), generator=generator) for pn in TINY_PATCH_NUMS]
    return vqvae.quantize.teacher_input(indices)
