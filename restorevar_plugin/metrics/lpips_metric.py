"""LPIPS as an evaluation metric (RestoreVAR: AlexNet, v0.1, inputs in [-1, 1], mean over images).

The official code uses torchmetrics' ``LearnedPerceptualImagePatchSimilarity(net_type='alex')``, which
carries the same AlexNet backbone and v0.1 linear layers as the ``lpips`` package we use. The network
is the one :class:`~restorevar_plugin.losses.lpips_loss.LPIPSLoss` builds (same files, same missing-file
errors), created once per (net, device, files) and kept for the life of the process.
"""
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from restorevar_plugin.checkpoints import resolve_pretrained_file
from restorevar_plugin.losses.lpips_loss import LPIPSLoss
from restorevar_plugin.metrics.metric_utils import (
    bgr_uint8_to_rgb,
    check_metric_options,
    default_device,
    rgb_array_to_tensor,
    rgb_image_batch,
)

_NETWORKS = {}


def lpips_network(net='alex', device=None, lpips_weights_path=None, backbone_weights_path=None):
    """The cached :class:`LPIPSLoss` (``input_range=(0, 1)``, ``reduction='none'``) for these files and device.

    The backbone file is located on every call, so a missing file is reported even after a cache hit
    and a changed ``TORCH_HOME`` selects another file.
    """
    device = torch.device(device or default_device())
    backbone_file = resolve_pretrained_file(f'lpips_{net}', backbone_weights_path)
    key = (net, str(device), str(backbone_file.resolve()), str(lpips_weights_path))
    if key not in _NETWORKS:
        _NETWORKS[key] = LPIPSLoss(net=net, input_range=(0, 1), reduction='none',
                                   lpips_weights_path=lpips_weights_path,
                                   backbone_weights_path=backbone_file).to(device)
    return _NETWORKS[key]


def lpips_tensor(pred, gt, net='alex', device=None, lpips_weights_path=None, backbone_weights_path=None):
    """LPIPS of float outputs, mean over the batch.

    Args:
        pred (Tensor): ``(3, H, W)`` or ``(B, 3, H, W)`` RGB in [0, 1] (clipped to it), sides >= 31 for alex.
        gt (Tensor): Same shape, RGB in [0, 1].
        net, device, lpips_weights_path, backbone_weights_path: See :func:`lpips_network`.

    Returns:
        float: Mean LPIPS distance (0 for identical images, lower is better).
    """
    network = lpips_network(net, device, lpips_weights_path, backbone_weights_path)
    device = next(network.parameters()).device
    with torch.inference_mode():
        distances = network(rgb_image_batch(pred, 'pred').to(device), rgb_image_batch(gt, 'gt').to(device))
    return distances.mean().item()


@METRIC_REGISTRY.register()
def calculate_lpips(img, img2, net='alex', device=None, lpips_weights_path=None, backbone_weights_path=None,
                    **kwargs):
    """LPIPS between BasicSR's ``img`` (restored) and ``img2`` (GT), both ``(H, W, 3)`` uint8 BGR.

    Args:
        net (str): ``'alex'`` (RestoreVAR protocol) or ``'vgg'``.
        device (str | None): ``None`` = CUDA when available, else CPU.
        lpips_weights_path, backbone_weights_path (str | None): Local files; see
            :func:`restorevar_plugin.losses.lpips_loss.build_lpips_network`.
        **kwargs: ``better`` (read by the model).

    Returns:
        float: LPIPS distance, lower is better.
    """
    check_metric_options('calculate_lpips', kwargs)
    pred = rgb_array_to_tensor(bgr_uint8_to_rgb(img, 'img'))
    gt = rgb_array_to_tensor(bgr_uint8_to_rgb(img2, 'img2'))
    return lpips_tensor(pred, gt, net, device, lpips_weights_path, backbone_weights_path)
