"""Where generation's extra time goes: the transformer blocks' linears at each scale's row count.

Next-scale generation runs every block once per scale, so it streams the per-scale weights (every block
``nn.Linear`` except the condition's key/value projection, computed once per image) once per scale, with as
many rows as the scale has tokens; the teacher-forced forward streams them once with all the tokens. This
script times one pass over those weights at each scale's row count against one pass at the full sequence,
as ``F.linear``, as the transposed product ``W @ x^T`` (the small result transposed back) and as inference
runs them on a CPU (``restorevar_plugin.models.inference_linears``: oneDNN-prepacked weights for the row
counts of ``FP32_PREPACKED_ROWS``, ``F.linear`` otherwise), and prints the weight traffic of ``F.linear`` in
GB/s. Random weights, batch 1, fp32.

It also prints what the prepacked pass would take if each one cost a whole weight read plus its rows'
arithmetic, with nothing overlapped (:func:`read_plus_rows_seconds`, the line through the 1-row and the
full-sequence pass): when the measured times follow that line, generation's extra linear time is about one
weight read per scale after the first, which no choice among these products removes.

Example::

    python benchmarks/block_linears.py                 # d16 at 256 px (~1 min on 2 cores)
    python benchmarks/block_linears.py --size 512 --threads 1
"""
import argparse
import contextlib
import time

import torch
import torch.nn.functional as F
from patch_schedules import PATCH_NUMS

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)
from restorevar_plugin.archs.restorevar_arch import RestoreVARTransformer
from restorevar_plugin.models.inference_linears import InferenceLinearWeights


def per_scale_linears(transformer):
    """The block ``nn.Linear`` modules run at every scale (all but the condition's key/value projection)."""
    return [module for block in transformer.blocks for name, module in block.named_modules()
            if isinstance(module, torch.nn.Linear) and not name.endswith('kv_proj')]


def linear(x, layer):
    """``F.linear``: ``(M, K) -> (M, N)``."""
    return F.linear(x, layer.weight, layer.bias)


def transposed_linear(x, layer):
    """The same product as ``W @ x^T`` plus the bias, transposed back to a contiguous ``(M, N)``."""
    bias = layer.bias[:, None] if layer.bias is not None else torch.zeros(1, 1)
    return torch.addmm(bias, layer.weight, x.t()).t().contiguous()


def read_plus_rows_seconds(rows, fewest, most):
    """The time of a pass at ``rows`` rows on the line through two measured ``(rows, seconds)`` passes.

    With ``fewest`` at one row, its intercept is the cost of reading the weights once and its slope the cost
    of each row's arithmetic: the time a pass takes when the weight stream and the arithmetic do not overlap.
    """
    (low_rows, low_seconds), (high_rows, high_seconds) = fewest, most
    return low_seconds + (rows - low_rows) * (high_seconds - low_seconds) / (high_rows - low_rows)


def pass_seconds(layers, rows, product, repeats):
    """Fastest of ``repeats`` passes of ``rows`` random rows through every layer, in seconds."""
    inputs = {layer.in_features: torch.randn(rows, layer.in_features) for layer in layers}
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        for layer in layers:
            product(inputs[layer.in_features], layer)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=256, choices=sorted(PATCH_NUMS))
    parser.add_argument('--depth', type=int, default=16)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    patch_nums = PATCH_NUMS[args.size]
    layers = per_scale_linears(RestoreVARTransformer(patch_nums=patch_nums, depth=args.depth).eval())
    weight_bytes = sum(layer.weight.numel() * layer.weight.element_size() for layer in layers)
    sequence = sum(n * n for n in patch_nums)
    print(f'd{args.depth} at {args.size} px, {torch.get_num_threads()} threads: {len(layers)} linears, '
          f'{weight_bytes / 1e9:.3f} GB of fp32 weights per pass')
    pass_seconds(layers, 1, linear, 1)
    prepacked = InferenceLinearWeights()
    # name: (product, context it runs in); `F.linear` on a prepared weight runs on its oneDNN-blocked copy
    products = {'F.linear': (linear, contextlib.nullcontext), 'W @ x^T': (transposed_linear, contextlib.nullcontext),
                'prepacked': (linear, lambda: prepacked.use(layers))}
    print(f'{"rows":>6} {"F.linear ms":>12} {"GB/s":>6} {"W @ x^T ms":>11} {"ratio":>6} {"prepacked ms":>13} '
          f'{"ratio":>6}')
    per_scale = dict.fromkeys(products, 0.0)
    row_counts = [n * n for n in patch_nums] + [sequence]
    measured = {}
    for rows in row_counts:
        seconds = {}
        for name, (product, context) in products.items():
            with context():
                seconds[name] = pass_seconds(layers, rows, product, args.repeats)
            if rows != sequence:
                per_scale[name] += seconds[name]
        measured[rows] = seconds
        base = seconds['F.linear']
        print(f'{rows:>6} {base * 1e3:>12.1f} {weight_bytes / base / 1e9:>6.1f} '
              f'{seconds["W @ x^T"] * 1e3:>11.1f} {seconds["W @ x^T"] / base:>6.2f} '
              f'{seconds["prepacked"] * 1e3:>13.1f} {seconds["prepacked"] / base:>6.2f}')
    for name in products:
        print(f'{name}: one pass per scale {per_scale[name]:.3f} s, one pass at {sequence} rows {seconds[name]:.3f} s; '
              f'the extra linear time of generation {per_scale[name] - seconds[name]:.3f} s')
    fewest, most = ((rows, measured[rows]['prepacked']) for rows in (row_counts[0], sequence))
    line = [read_plus_rows_seconds(rows, fewest, most) for rows in row_counts[:-1]]
    print('prepacked, one weight read plus the rows\' arithmetic per pass (ms): '
          + ' '.join(f'{seconds * 1e3:.0f}' for seconds in line)
          + f'; per scale {sum(line):.3f} s against {per_scale["prepacked"]:.3f} s measured, the extra time '
          f'{sum(line) - most[1]:.3f} s')


if __name__ == '__main__':
    main()
