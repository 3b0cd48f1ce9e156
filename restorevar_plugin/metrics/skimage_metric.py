"""PSNR and SSIM as RestoreVAR, PromptIR and AWRaCLe compute them: scikit-image on RGB floats in [0, 1].

``peak_signal_noise_ratio(gt, pred, data_range=1)`` and ``structural_similarity(gt, pred,
data_range=1, channel_axis=2)`` (skimage defaults: 7x7 uniform window, sample covariance, mean of the
per-channel SSIMs), no border crop, not the Y channel. BasicSR's own ``calculate_psnr`` /
``calculate_ssim`` differ (BGR/Y, MATLAB Gaussian SSIM on [0, 255]): see
:mod:`restorevar_plugin.metrics.protocols`.

Two entry points:

* ``calculate_psnr_skimage`` / ``calculate_ssim_skimage`` (METRIC_REGISTRY): BasicSR's uint8 BGR arrays.
  They come from ``tensor2img``, which **rounds** the output to 8 bits; the official code measures the
  float output before any rounding. Rounding adds at most half a grey level per pixel: measured on
  astronaut with Gaussian noise, -0.007 dB at 31 dB, -0.06 dB at 40 dB, -0.22 dB at 46 dB (SSIM -0.0002
  to -0.0004); ``tests/test_metrics.py`` checks the bound at 30 dB.
* ``psnr_skimage_tensor`` / ``ssim_skimage_tensor``: the float ``(3, H, W)`` outputs in [0, 1], clipped and
  converted as the official code does (float32 stays float32), for models that keep float outputs.
"""
from basicsr.utils.registry import METRIC_REGISTRY
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from restorevar_plugin.metrics.metric_utils import (
    bgr_uint8_to_rgb,
    check_metric_options,
    rgb_image_batch,
)

# BasicSR options this protocol accepts only at the value that means "as the protocol does anyway".
NEUTRAL_OPTIONS = {'crop_border': 0, 'test_y_channel': False, 'input_order': 'HWC'}


def psnr_rgb(pred, gt):
    """skimage PSNR (dB) of two ``(H, W, 3)`` RGB float arrays in [0, 1]; ``inf`` for identical images."""
    return float(peak_signal_noise_ratio(gt, pred, data_range=1))


def ssim_rgb(pred, gt):
    """skimage SSIM of two ``(H, W, 3)`` RGB float arrays in [0, 1] (7x7 uniform window, per channel, averaged)."""
    return float(structural_similarity(gt, pred, data_range=1, channel_axis=2))


def _single_rgb_array(image, name):
    """``(3, H, W)`` float tensor in [0, 1] -> clipped ``(H, W, 3)`` float32 numpy array."""
    if image.dim() != 3:
        raise ValueError(f'{name} must be a single (3, H, W) image, got shape {tuple(image.shape)}')
    return rgb_image_batch(image, name)[0].permute(1, 2, 0).cpu().numpy()


def psnr_skimage_tensor(pred, gt):
    """RestoreVAR-protocol PSNR of float outputs.

    Args:
        pred (Tensor): ``(3, H, W)`` RGB in [0, 1] (clipped to it).
        gt (Tensor): ``(3, H, W)`` RGB in [0, 1].

    Returns:
        float: PSNR in dB.
    """
    return psnr_rgb(_single_rgb_array(pred, 'pred'), _single_rgb_array(gt, 'gt'))


def ssim_skimage_tensor(pred, gt):
    """RestoreVAR-protocol SSIM of float outputs; ``pred``, ``gt``: ``(3, H, W)`` RGB in [0, 1]. Returns a float."""
    return ssim_rgb(_single_rgb_array(pred, 'pred'), _single_rgb_array(gt, 'gt'))


@METRIC_REGISTRY.register()
def calculate_psnr_skimage(img, img2, **kwargs):
    """RestoreVAR/PromptIR-protocol PSNR (dB) of BasicSR's ``img`` (restored) and ``img2`` (GT).

    Args:
        img (ndarray): ``(H, W, 3)`` uint8 BGR.
        img2 (ndarray): ``(H, W, 3)`` uint8 BGR, same shape.
        **kwargs: ``better`` (read by the model); ``crop_border`` (only 0), ``test_y_channel`` (only False).

    Returns:
        float: PSNR in dB on RGB in [0, 1], no crop.
    """
    check_metric_options('calculate_psnr_skimage', kwargs, NEUTRAL_OPTIONS)
    return psnr_rgb(bgr_uint8_to_rgb(img, 'img'), bgr_uint8_to_rgb(img2, 'img2'))


@METRIC_REGISTRY.register()
def calculate_ssim_skimage(img, img2, **kwargs):
    """RestoreVAR/PromptIR-protocol SSIM of BasicSR's ``img`` and ``img2`` (see :func:`calculate_psnr_skimage`)."""
    check_metric_options('calculate_ssim_skimage', kwargs, NEUTRAL_OPTIONS)
    return ssim_rgb(bgr_uint8_to_rgb(img, 'img'), bgr_uint8_to_rgb(img2, 'img2'))
