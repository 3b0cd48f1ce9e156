"""The weights the ``nn.Linear`` layers of frozen networks multiply with at inference, prepared once.

Two preparations, both made once and kept while the weights do not change (in-place updates and
reloading are noticed through the weight's version counter and storage):

* **oneDNN prepacking (CPU).** The RestoreVAR transformer runs all its blocks once per scale, with 1 to a
  few hundred rows, and ``F.linear`` on a plain ``(N, K)`` row-major weight streams it far below the
  memory bandwidth at those row counts. Reordered once into oneDNN's blocked layout
  (``torch.ops.mkldnn._reorder_linear_weight``, the reorder of Inductor's CPU weight prepacking) and
  multiplied with ``torch.ops.mkldnn._linear_pointwise``, the product is the same up to fp32 rounding
  (another summation order) and, measured on an Intel Xeon with 2 threads for the d16 blocks
  (``python benchmarks/block_linears.py``), takes 0.65-0.74x the time of ``F.linear`` for 4-25 rows,
  0.78-0.90x for 36-256 rows and 0.96x for 324, but 0.99-1.08x from 400 rows up and 1.03-1.24x for a single
  row: float32 products outside :data:`FP32_PREPACKED_ROWS` keep ``F.linear``. bfloat16 ones are prepacked
  at every row count (0.56-0.71x at 4-256 rows, 0.94x at 680). The blocked copy takes as much memory as the
  weights (1.07 GB for the d16 blocks in fp32, half in bf16).
* **Reduced-precision weights.** Autocast casts a Linear's float32 weight to the autocast dtype at every
  call and caches the cast only for parameters that require gradients, which frozen networks do not:
  blocks called once per scale would re-cast all their weights at every scale. Packed (CPU) or cast
  (GPU) once in the autocast dtype, they give the same values.

``with weights.use(modules, dtype, prepack):`` swaps the prepared weights in for the duration of the
context and puts the parameters back on exit. Inference only: the prepared weights carry no gradient.
"""
import contextlib
import weakref

import torch
import torch.nn.functional as F
from torch import nn


def _linear_arguments(args, kwargs):
    """``(input, weight, bias)`` of an ``F.linear`` call."""
    names = ('input', 'weight', 'bias')
    values = dict(zip(names, args), **kwargs)
    return values['input'], values['weight'], values.get('bias')


FP32_PREPACKED_ROWS = range(2, 400)  # rows of the float32 products that run on the prepacked weight


class PrepackedWeight(torch.Tensor):
    """A Linear weight ``(N, K)`` that also carries its oneDNN-blocked copy in ``packed_dtype``.

    ``F.linear(x, weight, bias)`` with ``x`` of shape ``(..., K)`` (two or more dimensions; in float32 with
    a row count in :data:`FP32_PREPACKED_ROWS`) runs oneDNN's matmul on the blocked copy, with ``x`` and
    ``bias`` cast to ``packed_dtype`` (as autocast would cast them); the result is ``(..., N)`` in
    ``packed_dtype``. Every other operation, and any other ``F.linear``, sees the ordinary dense weight (the
    parameter's own float32 values).

    Args:
        dense (Tensor): The parameter's ``(N, K)`` weight.
        packed_dtype (torch.dtype): float32 (exact path) or the autocast dtype.
        rows_hint (int): Rows the reorder is tuned for; any row count gives the same values.
    """

    @staticmethod
    def __new__(cls, dense, packed_dtype, rows_hint):
        weight = torch.Tensor._make_subclass(cls, dense.detach())
        weight.packed = torch.ops.mkldnn._reorder_linear_weight(dense.detach().to(packed_dtype), rows_hint)
        weight.packed_dtype = packed_dtype
        return weight

    def _runs_prepacked(self, x):
        """Whether ``F.linear`` of the input ``x`` ``(..., K)`` runs on the blocked copy."""
        if x.dim() < 2:
            return False
        return self.packed_dtype != torch.float32 or x.numel() // x.shape[-1] in FP32_PREPACKED_ROWS

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, bias = _linear_arguments(args, kwargs)
            if isinstance(weight, PrepackedWeight) and weight._runs_prepacked(x):
                dtype = weight.packed_dtype
                bias = bias.to(dtype) if bias is not None else None
                return torch.ops.mkldnn._linear_pointwise(x.to(dtype), weight.packed, bias, 'none', [], '')
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def onednn_prepacking_available(device):
    """True when Linear weights on ``device`` can be prepacked (a CPU with oneDNN)."""
    return device.type == 'cpu' and torch.backends.mkldnn.is_available()


class InferenceLinearWeights:
    """Prepared Linear weights of frozen networks, cached per layer, dtype and kind (see the module docstring).

    Args:
        rows_hint (int): Rows the oneDNN reorder is tuned for (the values do not depend on it).
    """

    def __init__(self, rows_hint=16):
        self.rows_hint = rows_hint
        self._prepared = weakref.WeakKeyDictionary()

    def _prepared_parameters(self, layer, dtype, prepack):
        """``{name: tensor}`` that ``layer`` multiplies with in ``dtype`` (None = float32): the prepacked weight
        (the bias stays), or the weight and bias cast to ``dtype``; empty for the parameters themselves."""
        weight = layer.weight
        prepack = prepack and onednn_prepacking_available(weight.device) and dtype in (None, torch.bfloat16)
        if not prepack and dtype is None:
            return {}
        valid_for = (weight.data_ptr(), weight._version)
        cached = self._prepared.setdefault(layer, {}).get((dtype, prepack))
        if cached is None or cached[0] != valid_for:
            if prepack:
                prepared = {'weight': PrepackedWeight(weight, dtype or torch.float32, self.rows_hint)}
            else:
                prepared = {name: param.detach().to(dtype) for name, param in layer.named_parameters(recurse=False)}
            cached = self._prepared[layer][dtype, prepack] = (valid_for, prepared)
        return cached[1]

    @contextlib.contextmanager
    def use(self, modules, dtype=None, prepack=True):
        """Within the context, every ``nn.Linear`` in ``modules`` multiplies with its prepared weight (prepared
        on the first entry, kept for the next ones while the parameter is unchanged).

        Under autocast to ``dtype`` (or without autocast for ``dtype=None``) the results are those of the
        plain layers up to float32 rounding. A bias is cast (once) along with its weight when not prepacked.

        Args:
            modules (Iterable[nn.Module]): Networks (or parts) whose Linear layers to use prepared.
            dtype (torch.dtype | None): The autocast dtype, or None for float32.
            prepack (bool): Prepack float32 and bfloat16 weights with oneDNN on a CPU
                (``val.prepacked_linears``). Without it, or on a GPU, only reduced-precision casts are
                prepared and float32 layers keep their parameters.
        """
        swapped = []
        try:
            for layer in _linear_layers(modules):
                prepared = self._prepared_parameters(layer, dtype, prepack)
                if prepared:
                    swapped.append((layer, dict(layer._parameters)))
                    layer._parameters.update(prepared)
            yield
        finally:
            for layer, parameters in swapped:
                layer._parameters.update(parameters)


def _linear_layers(modules):
    """Every ``nn.Linear`` in ``modules``, once."""
    seen = set()
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Linear) and id(layer) not in seen:
                seen.add(id(layer))
                yield layer
