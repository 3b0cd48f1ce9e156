"""Metrics: skimage-protocol PSNR/SSIM, LPIPS, MUSIQ and CLIPIQA through BasicSR's metric interface; protocols."""
import math
import re
import urllib.request

import numpy as np
import pyiqa
import pytest
import torch
import torchvision
import yaml
from basicsr.metrics import calculate_metric, calculate_psnr, calculate_ssim
from basicsr.utils.registry import METRIC_REGISTRY
from pyiqa.archs.clip_model import _MODELS, CLIP
from pyiqa.archs.musiq_arch import default_model_urls
from pyiqa.default_model_configs import DEFAULT_CONFIGS
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from restorevar_plugin import cli
from restorevar_plugin.checkpoints import CHECKPOINTS
from restorevar_plugin.losses.lpips_loss import LPIPSLoss
from restorevar_plugin.metrics.iqa_metric import (
    calculate_clipiqa,
    calculate_musiq,
    iqa_network,
)
from restorevar_plugin.metrics.lpips_metric import (
    calculate_lpips,
    lpips_network,
    lpips_tensor,
)
from restorevar_plugin.metrics.protocols import (
    BASICSR_Y,
    METRICS,
    PROTOCOLS,
    RESTOREVAR_PAPER,
)
from restorevar_plugin.metrics.skimage_metric import (
    calculate_psnr_skimage,
    calculate_ssim_skimage,
    psnr_skimage_tensor,
    ssim_skimage_tensor,
)

pytest_plugins = ['helpers.pretrained']  # empty_torch_home, lpips_home, no_network, random_musiq_file


def rgb_pair(size=64, noise=12.0, seed=0):
    """(restored, gt) uint8 RGB crops of astronaut; restored = gt + Gaussian noise."""
    gt = skdata.astronaut()[120:120 + size, 180:180 + size]
    noisy = gt + np.random.default_rng(seed).normal(0, noise, gt.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8), gt


def bgr(rgb):
    """What BasicSR's tensor2img hands to metrics: BGR channel order."""
    return np.ascontiguousarray(rgb[..., ::-1])


def chw(rgb):
    """uint8 (H, W, 3) -> float (3, H, W) tensor in [0, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


def test_skimage_metrics_equal_skimage_and_basicsr_psnr():
    pred, gt = rgb_pair()
    pred_float, gt_float = pred / 255.0, gt / 255.0
    psnr = calculate_psnr_skimage(bgr(pred), bgr(gt))
    assert psnr == peak_signal_noise_ratio(gt_float, pred_float, data_range=1)
    assert psnr == pytest.approx(calculate_psnr(bgr(pred), bgr(gt), crop_border=0), abs=1e-9)
    ssim = calculate_ssim_skimage(bgr(pred), bgr(gt))
    assert ssim == structural_similarity(gt_float, pred_float, data_range=1, channel_axis=2)
    assert ssim != pytest.approx(calculate_ssim(bgr(pred), bgr(gt), crop_border=0), abs=1e-3)  # another protocol
    assert calculate_psnr_skimage(bgr(gt), bgr(gt)) == math.inf
    assert calculate_ssim_skimage(bgr(gt), bgr(gt)) == 1.0


def test_tensor_variants_follow_the_official_float_computation():
    _, gt = rgb_pair()
    gt_tensor = chw(gt)
    pred_tensor = gt_tensor + 0.03 * torch.randn(gt_tensor.shape, generator=torch.Generator().manual_seed(0))
    clipped = pred_tensor.clamp(0, 1).permute(1, 2, 0).numpy()
    gt_array = gt_tensor.permute(1, 2, 0).numpy()
    assert psnr_skimage_tensor(pred_tensor, gt_tensor) == peak_signal_noise_ratio(gt_array, clipped, data_range=1)
    assert ssim_skimage_tensor(pred_tensor, gt_tensor) == structural_similarity(gt_array, clipped, data_range=1,
                                                                               channel_axis=2)
    rounded = (pred_tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    psnr_uint8 = calculate_psnr_skimage(bgr(rounded), bgr(gt))
    assert 29 < psnr_uint8 < 32
    assert abs(psnr_uint8 - psnr_skimage_tensor(pred_tensor, gt_tensor)) < 0.02
    with pytest.raises(ValueError, match='single'):
        psnr_skimage_tensor(pred_tensor[None], gt_tensor[None])


def test_metric_options_and_inputs_are_checked():
    pred, gt = rgb_pair()
    assert calculate_psnr_skimage(bgr(pred), bgr(gt), better='higher', crop_border=0, test_y_channel=False) > 0
    with pytest.raises(ValueError, match='crop_border=4'):
        calculate_psnr_skimage(bgr(pred), bgr(gt), crop_border=4)
    with pytest.raises(ValueError, match="unknown option 'window'"):
        calculate_ssim_skimage(bgr(pred), bgr(gt), window=11)
    with pytest.raises(ValueError, match='img2 must be an'):
        calculate_psnr_skimage(bgr(pred), gt / 255.0)
    with pytest.raises(ValueError, match='img must be an'):
        calculate_ssim_skimage(pred[..., 0], gt[..., 0])


def test_protocol_options_run_through_basicsr_calculate_metric():
    pred, gt = rgb_pair()
    data = {'img': bgr(pred), 'img2': bgr(gt)}
    options = RESTOREVAR_PAPER.metric_options()
    assert calculate_metric(data, options['psnr']) == calculate_psnr_skimage(**data)
    assert calculate_metric(data, options['ssim']) == calculate_ssim_skimage(**data)
    y_options = BASICSR_Y.metric_options()
    assert calculate_metric(data, y_options['psnr']) == calculate_psnr(**data, crop_border=0, test_y_channel=True)
    for protocol in PROTOCOLS.values():
        line = protocol.describe()
        assert '\n' not in line and protocol.name in line and protocol.resize in line and protocol.crop in line
        for key, metric_options in protocol.metric_options().items():
            assert metric_options['type'] in METRIC_REGISTRY
            assert metric_options['better'] == METRICS[key].better


def test_basicsr_list_protocol_prints_each_description_and_a_pasteable_metrics_block(capsys):
    assert cli.main(['list', 'protocol']) == 0
    text = capsys.readouterr().out
    blocks = re.split(r'\n  (?=\S)', text)[1:]
    assert [block.split('\n', 1)[0] for block in blocks] == list(PROTOCOLS)
    for block, protocol in zip(blocks, PROTOCOLS.values()):
        _, description, rest = block.split('\n', 2)
        assert description.strip() == protocol.describe()
        assert yaml.safe_load(rest) == {'val': {'metrics': protocol.metric_options()}}
    assert cli.main(['list', 'protocols']) == 2


def test_metric_directions_agree_with_pyiqa():
    for key in ('psnr', 'ssim', 'lpips', 'musiq', 'clipiqa'):
        assert METRICS[key].lower_better == DEFAULT_CONFIGS[key].get('lower_better', False), key
    assert METRICS['lpips'].better == 'lower' and METRICS['musiq'].better == 'higher'
    assert [key for key, info in METRICS.items() if not info.needs_reference] == ['musiq', 'clipiqa']


def test_pretrained_file_facts_match_the_libraries():
    assert CHECKPOINTS['lpips_alex'].url == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    assert CHECKPOINTS['lpips_vgg'].url == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    assert DEFAULT_CONFIGS['musiq']['metric_opts']['pretrained'] == 'koniq10k'
    assert CHECKPOINTS['musiq'].url == default_model_urls['koniq10k']
    assert DEFAULT_CONFIGS['clipiqa']['metric_opts'] == {'type': 'CLIPIQA'}
    assert CHECKPOINTS['clipiqa'].url == _MODELS['RN50']
    for info in CHECKPOINTS.values():
        if info.hub_subdir is None:
            continue
        assert info.sha256[:8] in info.filename or info.sha256 in info.url
        assert info.url.endswith('/' + info.filename)


def test_network_guard_refuses_connections(no_network):
    with pytest.raises(AssertionError, match='network access attempted'):
        urllib.request.urlopen('http://127.0.0.1:9')


def test_lpips_metric_uses_the_lpips_loss_network(lpips_home):
    pred, gt = rgb_pair()
    assert calculate_lpips(bgr(gt), bgr(gt), better='lower') == 0
    distance = calculate_lpips(bgr(pred), bgr(gt))
    assert distance > 0
    expected = LPIPSLoss()(chw(pred)[None], chw(gt)[None]).item()
    # float32 through different CPU kernels (inference mode here, autograd in the loss): measured 2e-6 apart
    assert distance == pytest.approx(expected, rel=1e-5)
    assert lpips_tensor(chw(pred), chw(gt)) == pytest.approx(expected, rel=1e-5)
    assert lpips_network() is lpips_network()


def test_lpips_metric_reports_missing_backbone_after_a_cache_hit(lpips_home, monkeypatch, tmp_path):
    pred, gt = rgb_pair()
    calculate_lpips(bgr(pred), bgr(gt))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    hub = tmp_path / 'hub'
    with pytest.raises(FileNotFoundError, match=re.escape(str(hub / 'checkpoints' / 'alexnet-owt-7be5be79.pth'))):
        calculate_lpips(bgr(pred), bgr(gt))


def test_no_reference_metrics_name_missing_files(empty_torch_home, tmp_path):
    hub = empty_torch_home
    pred, gt = rgb_pair()
    with pytest.raises(FileNotFoundError) as error:
        calculate_musiq(bgr(pred), bgr(gt))
    assert str(hub / 'pyiqa' / 'musiq_koniq_ckpt-e95806b9.pth') in str(error.value)
    assert CHECKPOINTS['musiq'].url in str(error.value) and 'pretrained_model_path' in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        calculate_clipiqa(bgr(pred), bgr(gt))
    assert str(hub / 'clip' / 'RN50.pt') in str(error.value) and 'clip_model_path' in str(error.value)
    with pytest.raises(FileNotFoundError, match='elsewhere.pth'):
        calculate_musiq(bgr(pred), pretrained_model_path=tmp_path / 'elsewhere.pth')


def test_random_weight_musiq_runs_the_real_pyiqa_path(empty_torch_home, no_network, random_musiq_file):
    pred, gt = rgb_pair(size=64)
    score = calculate_musiq(bgr(pred), bgr(gt), device='cpu', pretrained_model_path=random_musiq_file, better='higher')
    assert math.isfinite(score)
    network = iqa_network('musiq', 'cpu', random_musiq_file)
    assert isinstance(network.net, pyiqa.archs.musiq_arch.MUSIQ)
    assert calculate_musiq(bgr(gt), device='cpu', pretrained_model_path=random_musiq_file) != score


def tiny_clip_archive(path):
    """A random-init CLIP (ResNet image tower) saved as a TorchScript archive, the format of OpenAI's RN50.pt."""
    torch.manual_seed(0)
    clip = CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None,
                context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)

    class Archive(torch.nn.Module):
        def forward(self, x):
            return x

    archive = Archive()
    for name, child in clip.named_children():
        archive.add_module(name, child)
    for name, parameter in clip.named_parameters(recurse=False):
        archive.register_parameter(name, parameter)
    torch.jit.save(torch.jit.trace(archive, torch.zeros(1)), str(path))
    return path


def test_clipiqa_reads_a_local_clip_archive(empty_torch_home, no_network, tmp_path):
    archive = tiny_clip_archive(tmp_path / 'tiny_clip.pt')
    pred, gt = rgb_pair(size=64)
    score = calculate_clipiqa(bgr(pred), bgr(gt), device='cpu', clip_model_path=archive)
    assert 0 < score < 1
    network = iqa_network('clipiqa', 'cpu', archive)
    assert network is iqa_network('clipiqa', 'cpu', str(archive))
    assert network.net.clip_model[0].visual.layer1[0].conv1.weight.shape[0] == 16  # the tiny archive, not RN50
