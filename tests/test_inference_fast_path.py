"""The fast inference path computes what the official procedure computes; precision and batching options."""
import argparse
import logging
import sys

import pytest
import torch
from basicsr.models import build_model

from helpers.restorevar import tiny_test_model
from helpers.runs import REPO, tiny_restoration_options
from helpers.tiny_restorevar import (
    TINY_PATCH_NUMS,
    TINY_REFINER,
    random_cond,
    teacher_input_for,
    tiny_transformer,
)
from restorevar_plugin.archs.layers.kv_cache import KVCache
from restorevar_plugin.archs.refiner_arch import LatentRefinerTransformer
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE
from restorevar_plugin.commands import test as test_command
from restorevar_plugin.models.inference_options import inference_dtype

sys.path.insert(0, str(REPO / 'benchmarks'))
from official_procedure import official_restore, teacher_forced_logits  # noqa: E402

IMAGE = 16  # tiny VQVAE below: downsample factor 4, latent grid 4 = TINY_PATCH_NUMS[-1]


def tiny_pipeline(seed=0):
    """Tiny VQVAE (with its attention level), transformer (open gates) and refiner.

    Every convolution (phi convs included) is re-drawn at std ``fan_in ** -0.5`` so that the features, and
    therefore the greedy tokens, differ between images.
    """
    torch.manual_seed(seed)
    vqvae = MultiScaleVQVAE(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1,
                            patch_nums=TINY_PATCH_NUMS).eval()
    with torch.no_grad():
        for conv in vqvae.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.normal_(0.0, conv.weight[0].numel()**-0.5)
                conv.bias.normal_(0.0, 0.1)
    transformer = tiny_transformer(seed + 1, gates=0.7)
    refiner = LatentRefinerTransformer(**TINY_REFINER).eval()
    return vqvae, transformer, refiner


def images(batch, seed):
    return torch.rand(batch, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def fast_restore(vqvae, transformer, refiner, img):
    """Our path as ``RestoreVARModel.restore`` runs it: channels-last VQVAE, batched, K/V once, KV cache."""
    vqvae = vqvae.to(memory_format=torch.channels_last)
    cond = vqvae.encode_features(img.contiguous(memory_format=torch.channels_last))
    generated = transformer.generate(cond, vqvae)
    tokens = refiner(generated.f_hat.flatten(2).transpose(1, 2), generated.last_hidden)
    latent = tokens.transpose(1, 2).reshape(generated.f_hat.shape).contiguous(memory_format=torch.channels_last)
    return generated, vqvae.decode_latent(latent)


@torch.no_grad()
def test_batched_fast_path_equals_the_official_procedure_image_by_image():
    vqvae, transformer, refiner = tiny_pipeline()
    img = images(3, seed=5)
    official = official_restore(vqvae, transformer, refiner, img)
    generated, restored = fast_restore(vqvae, transformer, refiner, img)
    assert len({tuple(official['indices'][-1][i].tolist()) for i in range(3)}) == 3  # images differ
    for scale, (ours, theirs) in enumerate(zip(generated.indices, official['indices'])):
        assert torch.equal(ours, theirs), f'scale {scale}'
    torch.testing.assert_close(generated.f_hat, official['f_hat'], atol=1e-5, rtol=0)
    torch.testing.assert_close(restored, official['image'], atol=1e-4, rtol=0)


@torch.no_grad()
def test_teacher_forced_forward_equals_the_official_dense_mask_forward():
    vqvae, transformer, _ = tiny_pipeline()
    cond = random_cond(2, seed=3)
    teacher_input = teacher_input_for(vqvae, 2, seed=4)
    expected = teacher_forced_logits(transformer, cond.flatten(2).transpose(1, 2), teacher_input)
    torch.testing.assert_close(transformer(cond, teacher_input), expected, atol=1e-5, rtol=1e-5)


def test_preallocated_kv_cache_rejects_overflow():
    cache = KVCache(capacity=3)
    keys = torch.randn(1, 2, 2, 4)
    k, v = cache.extend(keys, keys + 1)
    assert torch.equal(k, keys) and torch.equal(v, keys + 1) and len(cache) == 2
    with pytest.raises(ValueError, match='capacity 3 cannot hold 4 tokens'):
        cache.extend(keys, keys)


# --------------------------------------------------------------------------------------------- the model
def test_model_restore_equals_the_official_procedure_and_keeps_fp32_islands_under_bf16(tmp_path):
    model = tiny_test_model(tmp_path)
    img = images(2, seed=7).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)  # 32 px, the model's size
    expected = official_restore(model.net_vqvae, model.net_g, model.net_refiner, img)['image']
    restored = model.restore(img)
    torch.testing.assert_close(restored, expected, atol=1e-4, rtol=0)
    assert next(model.net_vqvae.parameters()).is_contiguous(memory_format=torch.channels_last)

    model.opt['val']['precision'] = 'bf16'
    seen = {}

    def record(name):
        return lambda module, inputs, output: seen.setdefault(name, output.dtype) and None

    hooks = [model.net_g.blocks[0].ffn.fc1.register_forward_hook(record('ffn')),
             model.net_g.word_embed.register_forward_hook(record('embed')),
             model.net_g.head.register_forward_hook(record('head'))]
    reduced = model.restore(img)
    for hook in hooks:
        hook.remove()
    assert seen == {'ffn': torch.bfloat16, 'embed': torch.float32, 'head': torch.float32}  # greedy choice in fp32
    assert model.net_g.blocks[0].ffn.fc1.weight.dtype == torch.float32  # cast for the call only
    assert reduced.dtype == torch.float32 and reduced.shape == restored.shape
    assert 0 < (reduced - restored).abs().max() < 0.5


def test_precision_option_is_checked_and_fp16_falls_back_on_cpu():
    cpu = torch.device('cpu')
    assert inference_dtype({'precision': 'bf16'}, cpu) is torch.bfloat16
    assert inference_dtype({}, cpu) is None
    assert inference_dtype({'precision': 'fp16'}, torch.device('cuda')) is torch.float16
    logger = logging.getLogger('basicsr')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        assert inference_dtype({'precision': 'fp16'}, cpu) is None
    finally:
        logger.removeHandler(handler)
    assert any('fp16 needs a GPU' in record.getMessage() for record in records)
    with pytest.raises(ValueError, match='val.precision must be one of fp32, bf16, fp16'):
        inference_dtype({'precision': 'half'}, cpu)


def test_restoration_model_test_runs_in_the_chosen_precision(tmp_path):
    opt = tiny_restoration_options('precision')
    opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    torch.manual_seed(0)
    model = build_model(opt)
    model.lq = torch.rand(2, 3, 24, 24)
    model.test()
    exact = model.output
    model.opt['val']['precision'] = 'bf16'
    model.test()
    assert model.output.dtype == torch.float32
    assert 0 < (model.output - exact).abs().max() < 0.1


def test_cli_precision_becomes_a_val_override():
    parser = argparse.ArgumentParser()
    test_command.add_arguments(parser)
    args = parser.parse_args(['-opt', 'x.yml', '--precision', 'bf16', '--force_yml', 'val:save_img=false'])
    captured = {}
    original = test_command.run_pipeline
    test_command.run_pipeline = lambda kind, parsed: captured.update(kind=kind, force=parsed.force_yml)
    try:
        test_command.run(args)
    finally:
        test_command.run_pipeline = original
    assert captured == {'kind': 'test', 'force': ['val:save_img=false', 'val:precision=bf16']}
    with pytest.raises(SystemExit):
        parser.parse_args(['-opt', 'x.yml', '--precision', 'int8'])
