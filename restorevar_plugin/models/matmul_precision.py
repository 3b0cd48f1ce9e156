"""TensorFloat-32 for evaluation (``val.tf32``), set for one validation or test run and restored afterwards.

The official RestoreVAR inference (``infer.py``) allows TF32 in CUDA matrix products and cuDNN convolutions
and sets the float32 matmul precision to ``'high'``; its Table 1 numbers were measured that way. These are
process-wide torch settings, so :func:`tf32_scope` records them on entry and puts them back on exit, also
when the run fails: nothing outlives the validation.
"""
import contextlib

import torch

TF32_PRECISION = 'high'


def tf32_flags():
    """``(cuda matmul allow_tf32, cudnn allow_tf32, float32 matmul precision)``, what :func:`tf32_scope` sets."""
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


def set_tf32_flags(flags):
    """Apply a tuple from :func:`tf32_flags` (the precision first: it also sets the matmul flag)."""
    matmul, cudnn, precision = flags
    torch.set_float32_matmul_precision(precision)
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


@contextlib.contextmanager
def tf32_scope(enabled):
    """Context manager: with ``enabled``, TF32 on for CUDA matmul and cuDNN and matmul precision ``'high'``
    inside, the previous settings restored on exit; without it, nothing is touched."""
    if not enabled:
        yield
        return
    previous = tf32_flags()
    set_tf32_flags((True, True, TF32_PRECISION))
    try:
        yield
    finally:
        set_tf32_flags(previous)


def validation_uses_tf32(val_opt, device):
    """Whether ``val.tf32`` applies: the option is true (default false) and the model runs on a CUDA device.

    Raises:
        ValueError: ``val.tf32`` is not a boolean.
    """
    value = (val_opt or {}).get('tf32', False)
    if not isinstance(value, bool):
        raise ValueError(f'val.tf32 must be true or false; got {value!r}')
    return value and device.type == 'cuda'
