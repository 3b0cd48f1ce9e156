"""Inputs and options of our metric functions: BasicSR's arrays, float tensors, option checks, device choice.

BasicSR's validation hands every metric ``img`` (restored) and ``img2`` (GT) as ``(H, W, 3)`` uint8
**BGR** arrays made by ``tensor2img`` (rounded, clipped), plus every key of the metric's YAML entry
except ``type`` (so also ``better``, which the model reads for best-iteration tracking).
"""
import numpy as np
import torch

# Keys BasicSR passes to every metric function although only the model uses them.
MODEL_OPTIONS = ('better',)


def default_device():
    """``'cuda'`` when a GPU is visible, else ``'cpu'``."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def bgr_uint8_to_rgb(img, name):
    """``(H, W, 3)`` uint8 BGR array (BasicSR's ``tensor2img``) -> ``(H, W, 3)`` float64 RGB in [0, 1].

    Raises:
        ValueError: ``img`` is not an ``(H, W, 3)`` uint8 array (the message names the argument ``name``).
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        described = f'{img.dtype} array of shape {img.shape}' if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f'{name} must be an (H, W, 3) uint8 BGR array as made by basicsr.utils.tensor2img; '
                         f'got a {described}')
    return img[..., ::-1].astype(np.float64) / 255


def rgb_array_to_tensor(rgb):
    """``(H, W, 3)`` RGB array in [0, 1] -> ``(1, 3, H, W)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().unsqueeze(0)


def rgb_image_batch(image, name):
    """A ``(3, H, W)`` or ``(B, 3, H, W)`` float tensor in [0, 1] as a ``(B, 3, H, W)`` float32 batch clamped to [0, 1].

    Clamping is part of the RestoreVAR/PromptIR protocol (outputs are clipped before every metric).

    Raises:
        ValueError: wrong shape (the message names the argument ``name``).
    """
    if not torch.is_tensor(image) or image.dim() not in (3, 4) or image.shape[-3] != 3:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f'{name} must be a (3, H, W) or (B, 3, H, W) RGB tensor in [0, 1]; got {shape}')
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    return batch.detach().float().clamp(0, 1)


def check_metric_options(metric, options, neutral=None):
    """Reject metric options that would be silently ignored.

    Args:
        metric (str): The metric function name, for the message.
        options (dict): The extra keyword arguments the function received.
        neutral (dict | None): BasicSR options the protocol accepts only at one value, e.g.
            ``{'crop_border': 0}`` for a protocol without border crop.

    Raises:
        ValueError: an unknown option, or a neutral option set to another value.
    """
    neutral = neutral or {}
    for key, value in options.items():
        if key in MODEL_OPTIONS:
            continue
        if key not in neutral:
            raise ValueError(f'{metric}: unknown option {key!r}; it accepts {sorted(neutral) + list(MODEL_OPTIONS)} '
                             f'besides its documented arguments')
        if value != neutral[key]:
            raise ValueError(f'{metric}: {key}={value!r} is not part of its protocol, which needs {key}='
                             f'{neutral[key]!r}; for BasicSR-style border crops or the Y channel use calculate_psnr / '
                             f'calculate_ssim')
