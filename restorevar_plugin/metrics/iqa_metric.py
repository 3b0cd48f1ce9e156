"""No-reference quality metrics MUSIQ and CLIPIQA through pyiqa, as in RestoreVAR's Table 2.

The official ``calc_metric.py`` calls ``pyiqa.create_metric('musiq')`` (MUSIQ, KonIQ-10k weights) and
``pyiqa.create_metric('clipiqa')`` (CLIPIQA on CLIP RN50) on the saved restored images only. Both
score higher for better images. Here pyiqa is imported on first use (it takes seconds), each network is
built once per (metric, device, file) and kept for the life of the process, and the weights are
always read from a local file that we locate first:

* MUSIQ: ``$TORCH_HOME/hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth`` or ``pretrained_model_path``, passed
  to pyiqa as ``pretrained_model_path`` (so pyiqa never looks at its download URL);
* CLIPIQA: ``$TORCH_HOME/hub/clip/RN50.pt`` or ``clip_model_path``, passed to pyiqa as its ``backbone``
  (a file path, which pyiqa's CLIP loader reads directly; with the name ``'RN50'`` it would check the
  file's SHA256 and download on a mismatch). It must be an OpenAI-style TorchScript archive like
  ``RN50.pt``: pyiqa's loader cannot read a plain state-dict file.

A missing file raises ``FileNotFoundError`` naming it, the location and the download URL.
"""
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from restorevar_plugin.checkpoints import resolve_pretrained_file
from restorevar_plugin.metrics.metric_utils import (
    bgr_uint8_to_rgb,
    check_metric_options,
    default_device,
    rgb_array_to_tensor,
    rgb_image_batch,
)

_NETWORKS = {}


def _create_pyiqa_metric(name, device, weights):
    """``pyiqa.create_metric`` for ``name`` reading the local file ``weights``."""
    import pyiqa

    file_option = {'musiq': 'pretrained_model_path', 'clipiqa': 'backbone'}[name]
    return pyiqa.create_metric(name, device=device, **{file_option: str(weights)})


def iqa_network(name, device=None, weights_path=None):
    """The cached pyiqa metric ``'musiq'`` or ``'clipiqa'``, built from a local file, never downloading.

    Args:
        name (str): ``'musiq'`` | ``'clipiqa'``.
        device (str | None): ``None`` = CUDA when available, else CPU.
        weights_path (str | Path | None): Local weight file; ``None`` = pyiqa's cache location (module docstring).

    Returns:
        pyiqa.InferenceModel: Maps ``(B, 3, H, W)`` RGB in [0, 1] to scores ``(B, 1)``, higher is better.

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: the weight file is missing.
    """
    if name not in ('musiq', 'clipiqa'):
        raise ValueError(f"iqa_network: name must be 'musiq' or 'clipiqa', got {name!r}")
    device = torch.device(device or default_device())
    weights = resolve_pretrained_file(name, weights_path).resolve()
    key = (name, str(device), str(weights))
    if key not in _NETWORKS:
        _NETWORKS[key] = _create_pyiqa_metric(name, device, weights)
    return _NETWORKS[key]


def _score(name, image, weights_path, device):
    network = iqa_network(name, device, weights_path)
    with torch.inference_mode():
        scores = network(rgb_image_batch(image, 'image').to(network.device))
    return scores.mean().item()


def musiq_tensor(image, device=None, pretrained_model_path=None):
    """MUSIQ (KonIQ) of ``(3, H, W)`` or ``(B, 3, H, W)`` RGB in [0, 1] (clipped), batch mean; higher is better."""
    return _score('musiq', image, pretrained_model_path, device)


def clipiqa_tensor(image, device=None, clip_model_path=None):
    """CLIPIQA of ``(3, H, W)`` or ``(B, 3, H, W)`` RGB in [0, 1] (clipped), mean over the batch, in [0, 1]."""
    return _score('clipiqa', image, clip_model_path, device)


@METRIC_REGISTRY.register()
def calculate_musiq(img, img2=None, device=None, pretrained_model_path=None, **kwargs):
    """MUSIQ (KonIQ-10k, pyiqa default) of BasicSR's restored ``img``; ``img2`` (GT) is ignored.

    Args:
        img (ndarray): ``(H, W, 3)`` uint8 BGR.
        img2 (ndarray | None): Unused (no-reference metric); BasicSR passes the GT when it has one.
        device (str | None): ``None`` = CUDA when available, else CPU.
        pretrained_model_path (str | None): Local ``musiq_koniq_ckpt-e95806b9.pth``.
        **kwargs: ``better`` (read by the model).

    Returns:
        float: Score, roughly 0-100, higher is better.
    """
    check_metric_options('calculate_musiq', kwargs)
    return musiq_tensor(rgb_array_to_tensor(bgr_uint8_to_rgb(img, 'img')), device, pretrained_model_path)


@METRIC_REGISTRY.register()
def calculate_clipiqa(img, img2=None, device=None, clip_model_path=None, **kwargs):
    """CLIPIQA (pyiqa default: CLIP RN50, antonym prompt pairs) of BasicSR's restored ``img``; ``img2`` is ignored.

    Args:
        img (ndarray): ``(H, W, 3)`` uint8 BGR.
        img2 (ndarray | None): Unused (no-reference metric).
        device (str | None): ``None`` = CUDA when available, else CPU.
        clip_model_path (str | None): Local CLIP ``RN50.pt`` (TorchScript archive).
        **kwargs: ``better`` (read by the model).

    Returns:
        float: Score in [0, 1], higher is better.
    """
    check_metric_options('calculate_clipiqa', kwargs)
    return clipiqa_tensor(rgb_array_to_tensor(bgr_uint8_to_rgb(img, 'img')), device, clip_model_path)
