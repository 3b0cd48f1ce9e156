"""Inference speed options read from ``val:`` (validation and ``basicsr test``), shared by our models.

``val.precision: fp32 | bf16 | fp16`` (default fp32, exact): inference runs under ``torch.autocast`` to that
dtype. bf16 works on CPU and GPU. fp16 is honoured on GPU only; on a CPU-only run it falls back to fp32 with
a warning (the same rule as ``train.amp``: one option file serves both machines, and fp16 autocast on CPU
is neither faster nor what the official model was validated with). RestoreVAR keeps the official model's
fp32 islands under autocast (condition and start-token embeddings, the quantizer's arithmetic) and adds one:
the output head that picks the greedy tokens runs in float32, so near-tied logits are not decided by bf16
rounding; results are returned as float32.

``val.compile: true`` (default false) compiles the convolutional and fixed-shape networks in place with
``nn.Module.compile`` (state-dict keys unchanged); results change only within the chosen precision.

``val.prepacked_linears`` (default true) multiplies with the RestoreVAR transformer's Linear weights prepared
once per test run: reordered into oneDNN's blocked layout on a CPU, cast to the reduced precision otherwise
(:mod:`.inference_linears`; numerics: float32 rounding, another summation order).

``val.retain_cpu_memory`` (default true) keeps the memory freed during a CPU test run mapped for reuse instead
of returning it to the kernel and page-faulting it in again (:mod:`.cpu_heap`; glibc only, values unchanged).

``val.channels_last`` (default true) stores the frozen VQVAE of a test run in channels-last layout and feeds
it channels-last images, the layout oneDNN's convolutions use without reordering (numerics: same
convolutions, other summation order, differences around 1e-6).
"""
import contextlib

import torch
from basicsr.utils import get_root_logger

PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# The ``val`` keys of this module, as ``restorevar_plugin.option_schema`` checks them (models declare them).
INFERENCE_OPTION_SCHEMA = {'precision': 'str', 'compile': 'bool', 'retain_cpu_memory': 'bool'}
RESTOREVAR_INFERENCE_OPTION_SCHEMA = {'channels_last': 'bool', 'prepacked_linears': 'bool'}


def inference_dtype(val_opt, device):
    """The autocast dtype of ``val.precision`` on ``device`` (None for fp32).

    Args:
        val_opt (dict | None): The ``val`` option block.
        device (torch.device): Where inference runs.

    Returns:
        torch.dtype | None: bfloat16, float16 (GPU only) or None.

    Raises:
        ValueError: ``val.precision`` is not one of fp32, bf16, fp16.
    """
    precision = (val_opt or {}).get('precision', 'fp32')
    if precision not in PRECISIONS:
        raise ValueError(f'val.precision must be one of {", ".join(PRECISIONS)}; got {precision!r}')
    if precision == 'fp16' and device.type != 'cuda':
        get_root_logger().warning('val.precision: fp16 needs a GPU; running inference in fp32 on the CPU '
                                  '(use bf16 for reduced precision on a CPU).')
        return None
    return PRECISIONS[precision]


def inference_autocast(dtype, device):
    """``torch.autocast(device.type, dtype)``, or a no-op context for ``dtype=None`` (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _flag(val_opt, name, default):
    """The boolean option ``val.<name>`` (``default`` when absent).

    Raises:
        ValueError: The option is set to something other than true or false.
    """
    value = (val_opt or {}).get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f'val.{name} must be true or false; got {value!r}')
    return value


def compile_requested(val_opt):
    """``val.compile`` (default False)."""
    return _flag(val_opt, 'compile', False)


def channels_last_requested(val_opt):
    """``val.channels_last`` (default True)."""
    return _flag(val_opt, 'channels_last', True)


def prepacked_linears_requested(val_opt):
    """``val.prepacked_linears`` (default True)."""
    return _flag(val_opt, 'prepacked_linears', True)


def retain_cpu_memory_requested(val_opt, device):
    """``val.retain_cpu_memory`` (default True), and only on a CPU (see :mod:`.cpu_heap`)."""
    return _flag(val_opt, 'retain_cpu_memory', True) and device.type == 'cpu'
