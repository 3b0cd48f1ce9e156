"""PromptIR and AWRaCLe: equal to the official forward (independent functional reference), official key
sets, shapes and parameter counts on ``meta``, official checkpoint layouts, frozen CLIP."""
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from clip.model import CLIP

from helpers.official_baselines import (
    awracle_reference,
    clip_reference_tokens,
    promptir_reference,
)
from restorevar_plugin.archs.awracle_arch import CLIP_VIT_B32, AWRaCLe, clip_preprocess
from restorevar_plugin.archs.awracle_arch import TINY_CONFIG as AWRACLE_TINY
from restorevar_plugin.archs.layers.prompted_restormer import pad_to_multiple
from restorevar_plugin.archs.promptir_arch import TINY_CONFIG as PROMPTIR_TINY
from restorevar_plugin.archs.promptir_arch import PromptIR
from restorevar_plugin.checkpoints import load_state_dict

UNUSED_PROMPTIR_LAYERS = ('chnl_reduce1', 'chnl_reduce2', 'chnl_reduce3', 'reduce_noise_channel_1',
                          'reduce_noise_channel_2', 'reduce_noise_channel_3')


def count(module, prefix=''):
    return sum(param.numel() for name, param in module.named_parameters() if name.startswith(prefix))


def perturbed(net, seed=0):
    """``net`` with every trainable parameter moved off its initial value (LayerNorm gains and temperatures
    no longer 1), so that the comparison exercises every weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if not name.startswith('clip.'):
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return net.eval()


def test_promptir_full_size_layout_on_meta():
    with torch.device('meta'):
        net = PromptIR()
        without_prompts = PromptIR(decoder=False)
    state = net.state_dict()
    assert len(state) == 548
    assert count(net) == 35_592_263 and count(without_prompts) == 32_107_288
    assert sum(count(net, name) for name in UNUSED_PROMPTIR_LAYERS) == 215_296
    expected = {
        'patch_embed.proj.weight': (48, 3, 3, 3),
        'prompt3.prompt_param': (1, 5, 320, 16, 16),
        'prompt3.linear_layer.weight': (5, 384),
        'encoder_level1.0.attn.qkv.weight': (144, 48, 1, 1),
        'encoder_level1.0.ffn.project_in.weight': (254, 48, 1, 1),
        'noise_level3.attn.qkv.weight': (2112, 704, 1, 1),
        'output.weight': (3, 96, 3, 3),
    }
    assert {key: tuple(state[key].shape) for key in expected} == expected
    prefixes = {key.split('.')[0] for key in state}
    assert prefixes == {'patch_embed', 'encoder_level1', 'encoder_level2', 'encoder_level3', 'down1_2', 'down2_3',
                        'down3_4', 'latent', 'up4_3', 'reduce_chan_level3', 'noise_level3', 'reduce_noise_level3',
                        'decoder_level3', 'up3_2', 'reduce_chan_level2', 'noise_level2', 'reduce_noise_level2',
                        'decoder_level2', 'up2_1', 'noise_level1', 'reduce_noise_level1', 'decoder_level1',
                        'refinement', 'output', 'prompt1', 'prompt2', 'prompt3', *UNUSED_PROMPTIR_LAYERS}


def test_awracle_full_size_layout_on_meta():
    with torch.device('meta'):
        net = AWRaCLe()
        promptir = PromptIR()
        clip_model = CLIP(**CLIP_VIT_B32)
    assert count(clip_model) == 151_277_313
    assert count(net) == 186_463_001 and count(net, 'clip.') == 151_277_313 and count(net, 'clip.visual.') == 87_849_216
    assert [count(net, f'prompt{k}.') for k in (1, 2, 3)] == [158_016, 533_120, 2_602_560]
    state = net.state_dict()
    clip_keys = [key for key in state if key.startswith('clip.')]
    assert len(clip_keys) == 302
    expected = {
        'clip.visual.conv1.weight': (768, 3, 32, 32),
        'clip.visual.positional_embedding': (50, 768),
        'clip.visual.transformer.resblocks.11.ln_2.weight': (768, ),
        'clip.token_embedding.weight': (49408, 512),
        'prompt3.linear_layer_ctx.weight': (320, 768),
        'prompt3.ctx_attn.to_qkv.weight': (1536, 320),
        'prompt3.ctx_attn.to_out.weight': (320, 512),
        'prompt3.proj_features.weight': (320, 384, 1, 1),
        'prompt3.fusion.to_q.weight': (512, 320),
        'prompt3.fusion.to_kv.weight': (1024, 320),
        'prompt3.fusion.to_out.weight': (320, 512),
        'prompt3.conv3x3.weight': (320, 320, 3, 3),
    }
    assert {key: tuple(state[key].shape) for key in expected} == expected
    backbone = {key: tuple(value.shape) for key, value in promptir.state_dict().items()
                if not key.startswith(('prompt', *UNUSED_PROMPTIR_LAYERS))}
    assert {key: tuple(state[key].shape) for key in backbone} == backbone
    assert net.feature_layer == 'visual.transformer.resblocks.11.ln_2'
    tokens = net.encode_context(torch.empty(2, 3, 300, 400, device='meta'), torch.empty(2, 3, 300, 400, device='meta'))
    assert tokens.shape == (50, 4, 768)


def test_promptir_equals_the_official_forward():
    torch.manual_seed(0)
    net = perturbed(PromptIR(**PROMPTIR_TINY))
    image = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        ours, reference = net(image), promptir_reference(net.state_dict(), image)
    assert ours.shape == image.shape
    assert (ours - reference).abs().max() <= 1e-4


def test_promptir_keeps_odd_sizes_by_reflect_padding():
    torch.manual_seed(1)
    net = perturbed(PromptIR(**PROMPTIR_TINY))
    image = torch.rand(1, 3, 13, 19)
    with torch.no_grad():
        ours = net(image)
        padded = F.pad(image, (0, 5, 0, 3), mode='reflect')
        reference = promptir_reference(net.state_dict(), padded)[..., :13, :19]
    assert ours.shape == (1, 3, 13, 19)
    assert (ours - reference).abs().max() <= 1e-4
    assert pad_to_multiple(torch.rand(1, 3, 2, 3), 8).shape == (1, 3, 8, 8)


def test_awracle_equals_the_official_forward():
    torch.manual_seed(2)
    net = perturbed(AWRaCLe(**AWRACLE_TINY))
    image = torch.rand(2, 3, 16, 16)
    context_lq, context_gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = net(image, context_lq, context_gt)
        reference = awracle_reference(net.state_dict(), AWRACLE_TINY['clip_config'], image, context_lq, context_gt,
                                      prompt_heads=AWRACLE_TINY['heads'][1:], dim_head=AWRACLE_TINY['prompt_dim_head'])
        tokens = net.encode_context(context_lq, context_gt)
    assert (ours - reference).abs().max() <= 1e-4
    reference_tokens = clip_reference_tokens(net.state_dict(), AWRACLE_TINY['clip_config'], context_lq, context_gt)
    assert tokens.shape == (5, 4, 64) and torch.allclose(tokens, reference_tokens, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(net(image, context_tokens=tokens), ours, atol=1e-6)
        assert torch.allclose(net(image, context_gt, context_lq), ours, atol=1e-5)  # order-blind, as officially
        assert (net(image, torch.rand(2, 3, 32, 32), context_gt) - ours).abs().max() > 1e-2
        one_pair = net(image, context_lq[:1], context_gt[:1])
        both_with_first = net(image, context_lq[:1].expand(2, -1, -1, -1), context_gt[:1].expand(2, -1, -1, -1))
    assert torch.allclose(one_pair, both_with_first, atol=1e-6)


def test_clip_preprocessing_matches_torchvision():
    images = torch.rand(2, 3, 45, 70)
    expected = TF.center_crop(TF.resize(images, 32, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
                              .clamp(0, 1), [32, 32])
    expected = TF.normalize(expected, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    ours = clip_preprocess(images, 32)
    assert ours.shape == (2, 3, 32, 32) and torch.allclose(ours, expected, atol=1e-5)


def test_awracle_clip_is_frozen_and_stays_in_eval_mode():
    torch.manual_seed(3)
    net = AWRaCLe(**AWRACLE_TINY).train()
    assert not net.clip.training and net.latent.training
    assert all(not param.requires_grad for param in net.clip.parameters())
    net(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 40, 36), torch.rand(1, 3, 40, 36)).mean().backward()
    assert all(param.grad is None for param in net.clip.parameters())
    assert all(param.grad is not None for name, param in net.named_parameters() if not name.startswith('clip.'))


def official_layouts(state_dict):
    """The same weights in every layout the official code and BasicSR write."""
    return {
        'lightning': {'state_dict': {f'net.{key}': value for key, value in state_dict.items()}, 'epoch': 119,
                      'global_step': 1000},
        'basicsr_params': {'params': state_dict},
        'basicsr_params_ema': {'params_ema': state_dict},
        'flat': state_dict,
    }


def test_random_checkpoints_in_each_official_layout_load_strictly(tmp_path):
    for name, make in (('promptir', lambda: PromptIR(**dict(PROMPTIR_TINY, official_unused_layers=True))),
                       ('awracle', lambda: AWRaCLe(**AWRACLE_TINY))):
        torch.manual_seed(4)
        source = perturbed(make())
        expected = source.state_dict()
        for layout, checkpoint in official_layouts(expected).items():
            path = tmp_path / f'{name}_{layout}.ckpt'
            torch.save(checkpoint, path)
            state_dict, detected = load_state_dict(path, param_key='params_ema' if 'ema' in layout else 'params')
            assert detected == layout.split('_')[0]
            target = make()
            target.load_state_dict(state_dict, strict=True)
            for key, value in target.state_dict().items():
                assert torch.equal(value, expected[key]), f'{name} {layout}: {key}'
