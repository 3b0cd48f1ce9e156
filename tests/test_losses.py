"""SSIMLoss against scikit-image, LPIPSLoss through the real lpips code path with a planted backbone."""
import lpips
import numpy as np
import pytest
import torch
from basicsr.losses import build_loss
from skimage import data as skdata
from skimage.metrics import structural_similarity

from restorevar_plugin.losses.lpips_loss import LPIPSLoss
from restorevar_plugin.losses.ssim_loss import SSIMLoss

pytest_plugins = ['helpers.pretrained']  # alexnet_torch_home, empty_torch_home, lpips_home


def astronaut_pair(top, left, height, width, noise=0.08, seed=0):
    """A crop of astronaut and a noisy copy, as (H, W, 3) float64 arrays in [0, 1]."""
    clean = skdata.astronaut()[top:top + height, left:left + width].astype(np.float64) / 255
    noisy = np.clip(clean + np.random.default_rng(seed).normal(0, noise, clean.shape), 0, 1)
    return noisy, clean


def to_batch(*arrays):
    """(H, W, 3) arrays -> (N, 3, H, W) float32 tensor."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def skimage_gaussian_ssim(pred, gt):
    return structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1, channel_axis=2)


def test_ssim_loss_matches_skimage_per_image():
    pairs = [astronaut_pair(100, 150, 64, 64, noise=0.08), astronaut_pair(300, 20, 64, 64, noise=0.2, seed=1)]
    expected = [skimage_gaussian_ssim(pred, gt) for pred, gt in pairs]
    pred, gt = to_batch(*[p for p, _ in pairs]), to_batch(*[g for _, g in pairs])
    ssim = SSIMLoss().ssim_per_image(pred, gt)
    assert ssim.shape == (2,)
    np.testing.assert_allclose(ssim.numpy(), expected, atol=2e-6)
    assert expected[0] != pytest.approx(expected[1], abs=0.05)
    loss = SSIMLoss(loss_weight=0.5, reduction='none')(pred, gt)
    np.testing.assert_allclose(loss.numpy(), 0.5 * (1 - np.array(expected)), atol=2e-6)


def test_ssim_loss_non_square_and_range_invariant():
    pred, gt = astronaut_pair(50, 200, 48, 80)
    expected = skimage_gaussian_ssim(pred, gt)
    unit = SSIMLoss()(to_batch(pred), to_batch(gt))
    signed = SSIMLoss(input_range=[-1, 1])(to_batch(pred) * 2 - 1, to_batch(gt) * 2 - 1)
    assert unit.item() == pytest.approx(1 - expected, abs=2e-6)
    assert signed.item() == pytest.approx(unit.item(), abs=1e-6)


def test_ssim_loss_zero_for_identical_and_half_precision_inputs():
    pred, gt = astronaut_pair(0, 0, 40, 40)
    image = to_batch(gt)
    assert SSIMLoss()(image, image.clone()).item() == pytest.approx(0, abs=1e-6)
    full = SSIMLoss()(to_batch(pred), image)
    half = SSIMLoss()(to_batch(pred).half(), image.half())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), abs=1e-3)


def test_ssim_loss_gradient_step_improves_ssim():
    pred, gt = astronaut_pair(200, 200, 32, 32, noise=0.15)
    pred, gt = to_batch(pred).requires_grad_(), to_batch(gt)
    criterion = SSIMLoss()
    loss = criterion(pred, gt)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with torch.no_grad():
        assert criterion(pred - 2.0 * pred.grad, gt) < loss


def test_ssim_loss_built_from_options():
    criterion = build_loss({'type': 'SSIMLoss', 'loss_weight': 2.0, 'input_range': [-1, 1], 'window_size': 7})
    assert isinstance(criterion, SSIMLoss) and criterion.loss_weight == 2.0 and criterion.window.numel() == 7


@pytest.mark.parametrize('options, message', [
    ({'window_size': 8}, 'window_size'),
    ({'sigma': 0}, 'sigma'),
    ({'reduction': 'avg'}, 'reduction'),
    ({'input_range': (1, 0)}, 'input_range'),
    ({'input_range': 255}, 'input_range'),
])
def test_ssim_loss_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        SSIMLoss(**options)


def test_ssim_loss_rejects_bad_inputs():
    criterion = SSIMLoss()
    with pytest.raises(ValueError, match='same shape'):
        criterion(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match='at least 11x11'):
        criterion(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))


def test_lpips_loss_equals_lpips_package_with_same_backbone_file(lpips_home):
    reference = lpips.LPIPS(net='alex', verbose=False)  # torchvision reads the planted file from TORCH_HOME
    pred, gt = astronaut_pair(100, 100, 64, 64)
    pred, gt = to_batch(pred), to_batch(gt)
    criterion = LPIPSLoss(reduction='none')
    expected = reference(pred * 2 - 1, gt * 2 - 1).flatten()
    torch.testing.assert_close(criterion(pred, gt), expected)
    assert criterion(gt, gt.clone()).item() == 0
    assert criterion(pred, gt).item() > 0
    signed = LPIPSLoss(input_range=(-1, 1), loss_weight=3.0)
    assert signed(pred * 2 - 1, gt * 2 - 1).item() == pytest.approx(3.0 * expected.item(), rel=1e-5)


def test_lpips_loss_is_frozen_and_passes_gradients_to_inputs(lpips_home):
    criterion = LPIPSLoss().train()
    assert not criterion.network.training
    assert all(not parameter.requires_grad for parameter in criterion.parameters())
    pred, gt = astronaut_pair(0, 300, 48, 48)
    pred = to_batch(pred).requires_grad_()
    first = criterion(pred, to_batch(gt))
    first.backward()
    assert pred.grad.abs().sum() > 0
    assert criterion(pred, to_batch(gt)).item() == first.item()  # dropout stays off


def test_lpips_loss_reads_explicit_backbone_path(alexnet_torch_home, empty_torch_home):
    backbone = alexnet_torch_home / 'hub' / 'checkpoints' / 'alexnet-owt-7be5be79.pth'
    criterion = LPIPSLoss(backbone_weights_path=str(backbone))
    image = torch.rand(1, 3, 32, 32)
    assert criterion(image, image).item() == 0


def test_lpips_loss_missing_backbone_names_file_location_and_url(empty_torch_home):
    hub = empty_torch_home
    with pytest.raises(FileNotFoundError) as error:
        LPIPSLoss()
    message = str(error.value)
    assert str(hub / 'checkpoints' / 'alexnet-owt-7be5be79.pth') in message
    assert 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth' in message
    assert 'backbone_weights_path' in message
    with pytest.raises(FileNotFoundError, match='vgg16-397923af.pth'):
        LPIPSLoss(net='vgg')


def test_lpips_loss_rejects_bad_options_and_files(lpips_home, tmp_path):
    with pytest.raises(ValueError, match='loss_weight must be > 0'):
        LPIPSLoss(loss_weight=0)
    with pytest.raises(ValueError, match='net must be one of'):
        LPIPSLoss(net='squeeze')
    wrong = tmp_path / 'not_alexnet.pth'
    torch.save({'conv.weight': torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="'features.0.weight' is missing"):
        LPIPSLoss(backbone_weights_path=wrong)
    with pytest.raises(ValueError, match='at least 31x31'):
        LPIPSLoss()(torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24))
