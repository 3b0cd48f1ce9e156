"""The smallest sides in metrics/minimum_sizes.py are the real limits of the implementations, and check-data warns."""
import lpips
import numpy as np
import pytest
import torch
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from pyiqa.archs.clip_model import ModifiedResNet

from restorevar_plugin.metrics.minimum_sizes import (
    SizeRequirement,
    metric_requirement,
    strictest_requirement,
)
from restorevar_plugin.metrics.skimage_metric import calculate_ssim_skimage

pytestmark = pytest.mark.filterwarnings('ignore:Mean of empty slice:RuntimeWarning')  # the nan cases, on purpose


def images(height, width=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]


def scores(metric, side):
    """``metric`` on a ``side`` x 40 pair, or None when it raises; both orientations must agree."""
    values = []
    for height, width in ((side, 40), (40, side)):
        try:
            values.append(float(metric(height, width)))
        except (ValueError, RuntimeError):
            values.append(None)
    assert (values[0] is None) == (values[1] is None)
    return values[0]


def usable(value):
    return value is not None and np.isfinite(value)


@pytest.mark.parametrize('metric_opt, metric', [
    ({'type': 'calculate_ssim_skimage'}, lambda h, w: calculate_ssim_skimage(*images(h, w))),
    ({'type': 'calculate_ssim', 'crop_border': 0}, lambda h, w: calculate_ssim(*images(h, w), 0)),
    ({'type': 'calculate_ssim', 'crop_border': 2}, lambda h, w: calculate_ssim(*images(h, w), 2)),
    ({'type': 'calculate_psnr', 'crop_border': 3}, lambda h, w: calculate_psnr(*images(h, w), 3)),
])
def test_stated_side_is_the_smallest_that_scores(metric_opt, metric):
    side = metric_requirement('m', metric_opt).side
    assert usable(scores(metric, side)) and not usable(scores(metric, side - 1))


@pytest.mark.parametrize('net', ['alex', 'vgg'])
def test_lpips_backbones_need_the_stated_side(net):
    network = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False).eval()
    side = metric_requirement('lpips', {'type': 'calculate_lpips', 'net': net}).side

    def distance(height, width):
        with torch.no_grad():
            return network(torch.rand(1, 3, height, width) * 2 - 1, torch.rand(1, 3, height, width) * 2 - 1).mean()

    assert usable(scores(distance, side)) and not usable(scores(distance, side - 1))


def test_clipiqa_rn50_needs_the_stated_side():
    backbone = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, input_resolution=224, width=64).eval()
    side = metric_requirement('clipiqa', {'type': 'calculate_clipiqa'}).side

    def features(height, width):
        with torch.no_grad():
            return backbone(torch.rand(1, 3, height, width), pos_embedding=False).mean()

    assert usable(scores(features, side)) and not usable(scores(features, side - 1))


def test_strictest_requirement_names_the_binding_metric():
    metrics = {'psnr': {'type': 'calculate_psnr_skimage'}, 'ssim': {'type': 'calculate_ssim_skimage'},
               'lpips': {'type': 'calculate_lpips', 'net': 'alex'}, 'musiq': {'type': 'calculate_musiq'}}
    assert strictest_requirement(metrics) == SizeRequirement(31, "lpips: LPIPS alex's backbone")
    assert strictest_requirement({'psnr': {'type': 'calculate_psnr_skimage'}}) is None
    assert strictest_requirement(None) is None
