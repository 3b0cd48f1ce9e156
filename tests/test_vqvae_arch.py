"""MultiScaleVQVAE: official layout and counts, strict loading, quantizer maths, training path, errors."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from skimage import data as skdata

from restorevar_plugin.archs.layers import multiscale_quantizer
from restorevar_plugin.archs.layers.multiscale_quantizer import phi_indices_for
from restorevar_plugin.archs.layers.vqvae_blocks import AttnBlock, Upsample
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE
from restorevar_plugin.checkpoints import load_state_dict

PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
PATCH_NUMS_1024 = (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)
TINY = {'vocab_size': 64, 'z_channels': 8, 'ch': 32, 'ch_mult': (1, 2), 'num_res_blocks': 1,
        'patch_nums': (1, 2, 3, 4, 6, 8)}
TINY_TOKENS = sum(pn * pn for pn in TINY['patch_nums'])  # 130


def official_layout(ch=160, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z=32, vocab=4096, num_scales=10, num_phi=4):
    """Key -> shape of the official VQVAE state dict (VAR's ``models/vqvae.py``), written out level by level."""
    shapes = {}

    def conv(prefix, cout, cin, kernel):
        shapes[f'{prefix}.weight'], shapes[f'{prefix}.bias'] = (cout, cin, kernel, kernel), (cout, )

    def norm(prefix, channels):
        shapes[f'{prefix}.weight'], shapes[f'{prefix}.bias'] = (channels, ), (channels, )

    def resblock(prefix, cin, cout):
        norm(f'{prefix}.norm1', cin)
        conv(f'{prefix}.conv1', cout, cin, 3)
        norm(f'{prefix}.norm2', cout)
        conv(f'{prefix}.conv2', cout, cout, 3)
        if cin != cout:
            conv(f'{prefix}.nin_shortcut', cout, cin, 1)

    def attn(prefix, channels):
        norm(f'{prefix}.norm', channels)
        conv(f'{prefix}.qkv', 3 * channels, channels, 1)
        conv(f'{prefix}.proj_out', channels, channels, 1)

    def mid(prefix, channels):
        resblock(f'{prefix}.block_1', channels, channels)
        attn(f'{prefix}.attn_1', channels)
        resblock(f'{prefix}.block_2', channels, channels)

    widths = [ch * m for m in ch_mult]
    last = len(widths) - 1
    conv('encoder.conv_in', ch, 3, 3)
    cin = ch
    for level, width in enumerate(widths):
        for block in range(num_res_blocks):
            resblock(f'encoder.down.{level}.block.{block}', cin, width)
            cin = width
            if level == last:
                attn(f'encoder.down.{level}.attn.{block}', width)
        if level != last:
            conv(f'encoder.down.{level}.downsample.conv', width, width, 3)
    mid('encoder.mid', cin)
    norm('encoder.norm_out', cin)
    conv('encoder.conv_out', z, cin, 3)
    conv('decoder.conv_in', widths[-1], z, 3)
    mid('decoder.mid', widths[-1])
    cin = widths[-1]
    for level in reversed(range(len(widths))):
        for block in range(num_res_blocks + 1):
            resblock(f'decoder.up.{level}.block.{block}', cin, widths[level])
            cin = widths[level]
            if level == last:
                attn(f'decoder.up.{level}.attn.{block}', cin)
        if level != 0:
            conv(f'decoder.up.{level}.upsample.conv', cin, cin, 3)
    norm('decoder.norm_out', ch)
    conv('decoder.conv_out', 3, ch, 3)
    shapes['quantize.embedding.weight'] = (vocab, z)
    for k in range(num_phi):
        conv(f'quantize.quant_resi.qresi_ls.{k}', z, z, 3)
    shapes['quantize.ema_vocab_hit_SV'] = (num_scales, vocab)
    conv('quant_conv', z, z, 3)
    conv('post_quant_conv', z, z, 3)
    return shapes


def tiny_net(seed=0, random_quantizer=True, **overrides):
    """Tiny eval-mode VQVAE; with ``random_quantizer`` the codebook and phi convs get random N(0, 0.3) values."""
    torch.manual_seed(seed)
    net = MultiScaleVQVAE(**dict(TINY, **overrides)).eval()
    if random_quantizer:
        with torch.no_grad():
            for param in net.quantize.parameters():
                param.normal_(0, 0.3)
    return net


def reference_quantize(net, f):
    """VAR's ``f_to_idxBl_or_fhat`` (``models/quant.py``) transcribed with float64 distances: per-scale indices
    and f_hat after each scale."""
    quantizer = net.quantize
    codebook = quantizer.embedding.weight.detach()
    num_scales, side, batch = len(net.patch_nums), f.shape[-1], f.shape[0]
    ticks = np.linspace(1 / 12, 1 - 1 / 12, 4)
    f_rest, f_hat, indices, f_hats = f.clone(), torch.zeros_like(f), [], []
    for si, pn in enumerate(net.patch_nums):
        z = f_rest if si == num_scales - 1 else F.interpolate(f_rest, size=(pn, pn), mode='area')
        z = z.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
        idx = ((z.double()[:, None] - codebook.double()[None])**2).sum(-1).argmin(1).view(batch, pn * pn)
        h = codebook[idx].view(batch, pn, pn, -1).permute(0, 3, 1, 2)
        if si != num_scales - 1:
            h = F.interpolate(h, size=(side, side), mode='bicubic')
        phi = quantizer.quant_resi.qresi_ls[int(np.argmin(np.abs(ticks - si / (num_scales - 1))))]
        h = 0.5 * h + 0.5 * F.conv2d(h, phi.weight, phi.bias, padding=1)
        f_hat, f_rest = f_hat + h, f_rest - h
        indices.append(idx)
        f_hats.append(f_hat)
    return indices, f_hats


def skimage_batch(size):
    """astronaut, chelsea, coffee resized to ``size`` px: ``(3, 3, size, size)`` in [-1, 1]."""
    images = [skdata.astronaut(), skdata.chelsea(), skdata.coffee()]
    tensors = [torch.from_numpy(image).permute(2, 0, 1).float()[None] / 127.5 - 1 for image in images]
    return torch.cat([F.interpolate(t, size=(size, size), mode='area') for t in tensors])


# ----------------------------------------------------------------------------------- official layout
def test_full_config_parameter_counts_on_meta():
    with torch.device('meta'):
        net = MultiScaleVQVAE()
    assert sum(p.numel() for p in net.parameters()) == 108_948_355
    parts = {'encoder': 44_107_872, 'decoder': 64_653_923, 'quantize': 168_064, 'quant_conv': 9_248,
             'post_quant_conv': 9_248}
    assert {name: sum(p.numel() for p in getattr(net, name).parameters()) for name in parts} == parts
    assert net.patch_nums == PATCH_NUMS_512
    assert (net.vocab_size, net.z_channels, net.downsample_factor) == (4096, 32, 16)
    assert tuple(net.quantize.embedding.weight.shape) == (4096, 32)


def test_full_state_dict_matches_official_listing_and_loads_strictly():
    with torch.device('meta'):
        net = MultiScaleVQVAE()
    state = net.state_dict()
    expected = official_layout()
    assert len(state) == len(expected) == 324
    assert {key: tuple(value.shape) for key, value in state.items()} == expected
    assert {key.split('.')[0] for key in state} == {'encoder', 'decoder', 'quantize', 'quant_conv', 'post_quant_conv'}
    facts = {
        'encoder.conv_in.weight': (160, 3, 3, 3),
        'encoder.down.2.block.0.nin_shortcut.weight': (320, 160, 1, 1),
        'encoder.down.4.block.0.nin_shortcut.weight': (640, 320, 1, 1),
        'encoder.down.4.attn.1.qkv.weight': (1920, 640, 1, 1),
        'encoder.norm_out.weight': (640, ),
        'encoder.conv_out.weight': (32, 640, 3, 3),
        'decoder.conv_in.weight': (640, 32, 3, 3),
        'decoder.up.4.attn.2.qkv.weight': (1920, 640, 1, 1),
        'decoder.up.3.block.0.nin_shortcut.weight': (320, 640, 1, 1),
        'decoder.up.1.block.0.nin_shortcut.weight': (160, 320, 1, 1),
        'decoder.conv_out.weight': (3, 160, 3, 3),
        'quantize.embedding.weight': (4096, 32),
        'quantize.quant_resi.qresi_ls.3.weight': (32, 32, 3, 3),
        'quantize.quant_resi.qresi_ls.3.bias': (32, ),
        'quantize.ema_vocab_hit_SV': (10, 4096),
        'quant_conv.weight': (32, 32, 3, 3),
        'post_quant_conv.weight': (32, 32, 3, 3),
    }
    assert {key: tuple(state[key].shape) for key in facts} == facts
    assert 'encoder.down.3.attn.0.qkv.weight' not in state and 'decoder.up.0.upsample.conv.weight' not in state
    assert sum(math.prod(shape) for key, shape in expected.items() if key != 'quantize.ema_vocab_hit_SV') == 108_948_355

    official = {key: torch.empty(shape, device='meta') for key, shape in expected.items()}
    official['quantize.ema_vocab_hit_SV'] = torch.empty(14, 4096, device='meta')  # saved with 1024-px scales
    net.load_state_dict(official, strict=True)
    assert tuple(net.quantize.ema_vocab_hit_SV.shape) == (10, 4096)


def test_flat_checkpoint_round_trip_strict(tmp_path):
    config = {'vocab_size': 128, 'z_channels': 8, 'ch': 32, 'ch_mult': (1, 1, 2), 'num_res_blocks': 1,
              'patch_nums': (1, 2, 3, 4)}
    generator = torch.Generator().manual_seed(1)
    layout = official_layout(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, z=8, vocab=128, num_scales=4)
    saved = {key: torch.randn(shape, generator=generator) for key, shape in layout.items()}
    saved['quantize.ema_vocab_hit_SV'] = torch.rand(10, 128, generator=generator)
    path = tmp_path / 'vae_tiny.pth'
    torch.save(saved, path)

    state, detected = load_state_dict(path)
    assert detected == 'flat'
    net = MultiScaleVQVAE(**config)
    net.load_state_dict(state, strict=True)
    loaded = net.state_dict()
    assert all(torch.equal(loaded[key], saved[key]) for key in layout if key != 'quantize.ema_vocab_hit_SV')
    assert torch.equal(loaded['quantize.ema_vocab_hit_SV'], torch.zeros(4, 128))

    state['quantize.ema_vocab_hit_SV'] = torch.rand(4, 128)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.quantize.ema_vocab_hit_SV, state['quantize.ema_vocab_hit_SV'])
    state['quantize.embedding.weight'] = torch.randn(64, 8)
    with pytest.raises(RuntimeError, match='quantize.embedding.weight'):
        net.load_state_dict(state, strict=True)


def test_registry_builds_from_yaml_lists():
    net = ARCH_REGISTRY.get('MultiScaleVQVAE')(**dict(TINY, ch_mult=[1, 2], patch_nums=[1, 2, 4, 8]))
    assert net.patch_nums == (1, 2, 4, 8) and net.downsample_factor == 2


# ---------------------------------------------------------------------------------------- phi mapping
def test_phi_mapping_official_table_and_computed_rule(monkeypatch):
    assert tiny_net(patch_nums=PATCH_NUMS_512).quantize.phi_indices == (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)
    monkeypatch.setattr(multiscale_quantizer, 'OFFICIAL_PHI_TABLES', {})
    assert phi_indices_for(10, 4) == (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)  # the float64 rule agrees with the table

    ticks = [Fraction(3 + 10 * j, 36) for j in range(4)]  # exact linspace(1/12, 11/12, 4)
    exact = tuple(min(range(4), key=lambda j: abs(ticks[j] - Fraction(k, 13))) for k in range(14))
    expected = (0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3)
    assert tiny_net(patch_nums=PATCH_NUMS_1024).quantize.phi_indices == exact == expected
    with pytest.raises(ValueError, match='at least 2 scales'):
        phi_indices_for(1, 4)


# ------------------------------------------------------------------------------------ quantizer maths
def test_quantizer_matches_reference_and_paths_agree():
    net = tiny_net()
    assert net.quantize.phi_indices == (0, 0, 1, 2, 3, 3)  # not the identity: a wrong phi choice shows
    f = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        indices = net.quantize.latent_to_indices(f)
        ref_indices, ref_fhats = reference_quantize(net, f)
        f_hat, quantize_indices, _ = net.quantize.quantize(f)
        assert all(torch.equal(a, b) for a, b in zip(indices, ref_indices))
        assert all(torch.equal(a, b) for a, b in zip(indices, quantize_indices))
        assert all(idx.dtype == torch.long and idx.shape == (2, pn * pn) for idx, pn in zip(indices, net.patch_nums))
        assert torch.equal(net.quantize.indices_to_fhat(indices), f_hat)
        torch.testing.assert_close(f_hat, ref_fhats[-1], rtol=0, atol=1e-5)
        torch.testing.assert_close(net.quantize.indices_to_fhat(indices[:2]), ref_fhats[1], rtol=0, atol=1e-5)

        step_fhat, step_inputs = torch.zeros_like(f), []
        for si in range(len(net.patch_nums)):
            codes = net.quantize.embed_indices(indices[si], si)
            step_fhat, next_input = net.quantize.next_scale_input(si, step_fhat, codes)
            if next_input is not None:
                step_inputs.append(next_input.flatten(2).transpose(1, 2))
        assert next_input is None
        assert torch.equal(step_fhat, f_hat)
        teacher = net.quantize.teacher_input(indices)
        assert teacher.shape == (2, TINY_TOKENS - 1, 8)
        assert torch.equal(teacher, torch.cat(step_inputs, 1))
        assert torch.equal(net.quantize.teacher_input(indices[:-1]), teacher)
        expected_first = F.interpolate(ref_fhats[0], size=(2, 2), mode='area').flatten(2).transpose(1, 2)
        torch.testing.assert_close(teacher[:, :4], expected_first, rtol=0, atol=1e-5)


def test_quantizer_ignores_autocast():
    net = tiny_net()
    f = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        plain = net.quantize.latent_to_indices(f)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            autocast = net.quantize.latent_to_indices(f)
            teacher = net.quantize.teacher_input(plain)
    assert all(torch.equal(a, b) for a, b in zip(plain, autocast))
    assert teacher.dtype == torch.float32


def test_residual_shrinks_over_scales_on_real_images():
    """With a codebook seeded from two images' latents, every scale reduces ||f - f_hat_k||, also on a third.

    Random encoder weights; phi starts as the identity. The seeding takes astronaut and chelsea only, so
    coffee is held out; without the seeding the codes are ~0 and the residual barely moves.
    """
    torch.manual_seed(0)
    net = MultiScaleVQVAE(vocab_size=256, z_channels=8, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1,
                          patch_nums=(1, 2, 4, 8, 16)).eval()
    with torch.no_grad():
        f = net.encode_latent(skimage_batch(64))
        untrained = (f - net.quantize.indices_to_fhat(net.quantize.latent_to_indices(f))).flatten(1).norm(dim=1)
        net.quantize.init_codebook_from_latents(torch.cat([f[:2], f[:2].flip(-1)]), torch.Generator().manual_seed(0))
        indices = net.quantize.latent_to_indices(f)
        norms = [f.flatten(1).norm(dim=1)]
        norms += [(f - net.quantize.indices_to_fhat(indices[:k])).flatten(1).norm(dim=1) for k in range(1, 6)]
    norms = torch.stack(norms, 1)
    assert (norms[:, 1:] < norms[:, :-1]).all(), norms
    assert (norms[:, -1] < 0.6 * norms[:, 0]).all(), norms
    assert (untrained > 0.95 * norms[:, 0]).all()


# ---------------------------------------------------------------------------------- training path
def test_quantize_training_losses_ste_and_usage():
    net = tiny_net(beta=0.25).train()
    f = torch.randn(2, 8, 8, 8, requires_grad=True)
    f_hat, indices, losses = net.quantize.quantize(f)
    _, ref_fhats = reference_quantize(net, f.detach())
    codebook = sum(F.mse_loss(ref, f.detach()) for ref in ref_fhats) / 6
    torch.testing.assert_close(losses['codebook_loss'], codebook, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses['commitment_loss'], codebook, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses['vq_loss'], 1.25 * codebook, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_hat, ref_fhats[-1], rtol=0, atol=1e-5)

    counts = losses['code_counts']
    assert counts.shape == (6, 64) and counts.sum(1).tolist() == [2 * pn * pn for pn in net.patch_nums]
    assert torch.equal(counts[2], torch.bincount(indices[2].flatten(), minlength=64).float())
    assert torch.equal(net.quantize.ema_vocab_hit_SV, counts)  # first update copies

    (f_hat.sum() + losses['vq_loss']).backward()
    commitment_grad = 0.25 * sum(2 * (f.detach() - ref) / f.numel() for ref in ref_fhats) / 6
    torch.testing.assert_close(f.grad, 1 + commitment_grad, rtol=1e-4, atol=1e-6)  # straight-through + beta term
    assert net.quantize.embedding.weight.grad.abs().sum() > 0
    used = set(net.quantize.phi_indices)
    assert all((phi.weight.grad is not None) == (k in used) for k, phi in enumerate(net.quantize.quant_resi.qresi_ls))

    net.quantize.quantize(f.detach())
    torch.testing.assert_close(net.quantize.ema_vocab_hit_SV, counts, rtol=0, atol=1e-5)  # same batch: EMA fixed
    before = net.quantize.ema_vocab_hit_SV.clone()
    net.eval().quantize.quantize(torch.randn(2, 8, 8, 8))
    assert torch.equal(net.quantize.ema_vocab_hit_SV, before)


def test_forward_reconstruction_and_backward_reaches_encoder():
    net = tiny_net().train()
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    recon, losses = net(img)
    assert recon.shape == img.shape
    (recon.abs().mean() + losses['vq_loss']).backward()
    for name in ('encoder.conv_in.weight', 'quant_conv.weight', 'post_quant_conv.weight', 'decoder.conv_out.weight'):
        assert net.get_parameter(name).grad.abs().sum() > 0, name


def test_restart_dead_codes_reseeds_only_unused_codes():
    net = tiny_net(random_quantizer=False, vocab_size=256).train()
    with torch.no_grad():
        net.quantize.embedding.weight[:] = torch.randn(256, 8)
        net.quantize.embedding.weight[32:] += 100  # far from every latent: never chosen
    f = torch.randn(4, 8, 8, 8)
    assert net.quantize.restart_dead_codes(f) == 0  # no usage statistics yet
    net.quantize.quantize(f)
    hits = net.quantize.ema_vocab_hit_SV.sum(0)
    dead = hits < 0.08 * hits.sum() / 256
    uniform = net.quantize.ema_vocab_hit_SV.sum(1) / 256
    before = net.quantize.embedding.weight.detach().clone()
    assert net.quantize.restart_dead_codes(f, generator=torch.Generator().manual_seed(0)) == int(dead.sum()) >= 224
    after = net.quantize.embedding.weight.detach()
    assert torch.equal(after[~dead], before[~dead])
    assert after.abs().max() < 50
    first_scale = dead.nonzero().flatten()[:round(int(dead.sum()) / TINY_TOKENS)]  # scale 0 has 1 of the tokens
    means = f.mean((2, 3))
    assert len(first_scale) >= 2
    assert all(any(torch.allclose(after[code], m, atol=1e-6) for m in means) for code in first_scale)
    torch.testing.assert_close(net.quantize.ema_vocab_hit_SV[:, dead], uniform[:, None].expand(-1, int(dead.sum())))


# ---------------------------------------------------------------------------------- helpers and shapes
def test_swap_embed_decode_shapes_and_ranges():
    net = tiny_net()
    with torch.no_grad():
        img_a, img_b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
        features = net.encode_features(img_a)
        assert features.shape == (2, 8, 8, 8)
        torch.testing.assert_close(net.encode_latent(img_a), net.quant_conv(features))
        a, b = net.img_to_indices(img_a), net.img_to_indices(img_b)
        swapped = net.swap_scales(a, b, 2)
        assert all(x is y for x, y in zip(swapped, a[:2] + b[2:])) and len(swapped) == 6
        assert net.swap_scales(a, b, 0) == list(b) and net.swap_scales(a, b, 6) == list(a)
        h = net.quantize.embed_indices(a[4], 4)
        assert h.shape == (2, 8, 6, 6)
        torch.testing.assert_close(h[1, :, 3, 1], net.quantize.embedding.weight[a[4][1, 3 * 6 + 1]])
        image = net.decode_latent(net.quantize.indices_to_fhat(swapped))
        assert image.shape == (2, 3, 16, 16) and image.min() >= -1 and image.max() <= 1
        assert net.decode_latent(torch.randn(1, 8, 3, 5) * 50).shape == (1, 3, 6, 10)


def reference_autoencoder(state, img, num_levels, num_res_blocks):
    """Functional encoder -> quant_conv -> post_quant_conv -> decoder from a state dict (VAR's basic_vae.py)."""

    def conv(x, prefix, stride=1, padding=None):
        weight = state[f'{prefix}.weight']
        padding = weight.shape[-1] // 2 if padding is None else padding
        return F.conv2d(x, weight, state[f'{prefix}.bias'], stride, padding)

    def act_norm(x, prefix):
        return F.silu(F.group_norm(x, 32, state[f'{prefix}.weight'], state[f'{prefix}.bias'], eps=1e-6))

    def resblock(x, prefix):
        h = conv(act_norm(x, f'{prefix}.norm1'), f'{prefix}.conv1')
        h = conv(act_norm(h, f'{prefix}.norm2'), f'{prefix}.conv2')
        return (conv(x, f'{prefix}.nin_shortcut') if f'{prefix}.nin_shortcut.weight' in state else x) + h

    def attn(x, prefix):
        b, c, height, width = x.shape
        normed = F.group_norm(x, 32, state[f'{prefix}.norm.weight'], state[f'{prefix}.norm.bias'], eps=1e-6)
        q, k, v = conv(normed, f'{prefix}.qkv').reshape(b, 3, c, height * width).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k * c**-0.5, dim=2)
        return x + conv((v @ weights.transpose(1, 2)).reshape(b, c, height, width), f'{prefix}.proj_out')

    def stage(x, prefix, blocks):
        for block in range(blocks):
            x = resblock(x, f'{prefix}.block.{block}')
            if f'{prefix}.attn.{block}.qkv.weight' in state:
                x = attn(x, f'{prefix}.attn.{block}')
        return x

    def mid(x, prefix):
        return resblock(attn(resblock(x, f'{prefix}.block_1'), f'{prefix}.attn_1'), f'{prefix}.block_2')

    h = conv(img, 'encoder.conv_in')
    for level in range(num_levels):
        h = stage(h, f'encoder.down.{level}', num_res_blocks)
        if level != num_levels - 1:
            h = conv(F.pad(h, (0, 1, 0, 1)), f'encoder.down.{level}.downsample.conv', stride=2, padding=0)
    features = conv(act_norm(mid(h, 'encoder.mid'), 'encoder.norm_out'), 'encoder.conv_out')
    h = mid(conv(conv(conv(features, 'quant_conv'), 'post_quant_conv'), 'decoder.conv_in'), 'decoder.mid')
    for level in reversed(range(num_levels)):
        h = stage(h, f'decoder.up.{level}', num_res_blocks + 1)
        if level != 0:
            h = conv(F.interpolate(h, scale_factor=2, mode='nearest'), f'decoder.up.{level}.upsample.conv')
    return features, conv(act_norm(h, 'decoder.norm_out'), 'decoder.conv_out').clamp(-1, 1)


def test_encoder_decoder_match_functional_reference():
    torch.manual_seed(0)
    net = MultiScaleVQVAE(vocab_size=16, z_channels=8, ch=32, ch_mult=(1, 2, 2), num_res_blocks=2,
                          patch_nums=(1, 2)).eval()
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0, 0.05)
        img = torch.rand(2, 3, 16, 24) * 2 - 1
        features, image = reference_autoencoder(net.state_dict(), img, num_levels=3, num_res_blocks=2)
        torch.testing.assert_close(net.encode_features(img), features, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net.decode_latent(net.encode_latent(img)), image, rtol=1e-4, atol=1e-5)


def test_attention_block_is_scaled_softmax_attention():
    torch.manual_seed(0)
    block = AttnBlock(32)
    x = torch.randn(2, 32, 3, 5)
    with torch.no_grad():
        q, k, v = block.qkv(block.norm(x)).flatten(2).chunk(3, dim=1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(32), dim=-1)
        expected = x + block.proj_out((v @ weights.transpose(1, 2)).view(2, 32, 3, 5))
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    net = tiny_net()
    with pytest.raises(ValueError, match=r'img must have shape \(B, 3, H, W\)'):
        net.encode_features(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match='multiples of the downsample factor 2'):
        net.encode_latent(torch.zeros(1, 3, 15, 16))
    with pytest.raises(ValueError, match=r'f must have shape \(B, 8, 8, 8\)'):
        net.quantize.latent_to_indices(torch.zeros(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r'latent must have shape \(B, 8, h, w\)'):
        net.decode_latent(torch.zeros(1, 4, 8, 8))
    indices = net.quantize.latent_to_indices(torch.randn(2, 8, 8, 8))
    with pytest.raises(ValueError, match='list of 1 or 2 or 3 or 4 or 5 or 6 per-scale'):
        net.quantize.indices_to_fhat(indices + indices[:1])
    with pytest.raises(ValueError, match='list of 5 or 6 per-scale index tensors'):
        net.quantize.teacher_input(indices[:2])
    with pytest.raises(ValueError, match=r'indices_b\[1\] must be an integer tensor of shape \(2, 4\)'):
        net.swap_scales(indices, [indices[0], indices[2]] + indices[2:], 1)
    with pytest.raises(ValueError, match=r'shape \(2, 9\) for scale 2'):
        net.quantize.indices_to_fhat([indices[0], indices[1], indices[2][:1]])
    with pytest.raises(ValueError, match='integer tensor'):
        net.quantize.embed_indices(indices[1].float(), 1)
    with pytest.raises(ValueError, match=r'h must have shape \(2, 8, 2, 2\)'):
        net.quantize.next_scale_input(1, torch.zeros(2, 8, 8, 8), torch.zeros(2, 8, 4, 4))
    with pytest.raises(ValueError, match='k must be in'):
        net.swap_scales(indices, indices, 7)
    with pytest.raises(ValueError, match='strictly increasing'):
        MultiScaleVQVAE(**dict(TINY, patch_nums=(1, 4, 2, 8)))
    with pytest.raises(ValueError, match='share_quant_resi must be >= 2'):
        MultiScaleVQVAE(**dict(TINY, share_quant_resi=1))
    with pytest.raises(ValueError, match='divisible by 32'):
        MultiScaleVQVAE(**dict(TINY, ch=48))


@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
def test_upsample_phase_convolution_equals_nearest_then_conv_with_gradients(layout):
    torch.manual_seed(3)
    upsample = Upsample(32)
    x = torch.randn(2, 32, 5, 7).contiguous(memory_format=layout).requires_grad_()
    out = upsample(x)
    reference = upsample.conv(F.interpolate(x, scale_factor=2, mode='nearest'))
    assert out.shape == (2, 32, 10, 14)
    assert out.is_contiguous(memory_format=layout)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, upsample.conv.weight, upsample.conv.bias], grad)
    expected = torch.autograd.grad(reference, [x, upsample.conv.weight, upsample.conv.bias], grad)
    for mine, theirs in zip(got, expected):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-5)
