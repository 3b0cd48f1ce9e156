"""How next-scale generation scales with resolution and depth: FLOPs (all), wall time (what fits), a plot.

Resolutions 256, 512, 768, 1024 px, i.e. latent sides n = R / 16 = 16, 32, 48, 64. Patch schedules of the same
shape as the official 512-px one (1, 2, 3, 4, 6, 9, 13, 18, 24, 32): ten scales with sides
``pn_k = max(pn_{k-1} + 1, floor(s_k * n + 1/2))``, ``pn_0 = 1``, ``s_k = official_k / 32`` (so n = 32 gives the
official schedule and every schedule ends at n). Depths d16, d20, d24 (width 64 d, d heads), random weights.

FLOPs (2 per multiply-add) are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta``
device, so the attention inside ``scaled_dot_product_attention`` is counted, for our KV-cached generation
(condition K/V once) and, for comparison, for raster-order autoregression over the same n^2 tokens of the last
scale (one token per step, same transformer): counted analytically per token from the same layer sizes, with
a KV cache (attention O(n^4) in total) and without one (the whole prefix recomputed at every step, O(n^6):
the assumption of the VAR paper's and RestoreVAR's Appendix C argument).

The Appendix C argument: next-scale generation runs K = O(log n) steps whose token counts grow
geometrically, so the total cost is dominated by the last step, O((n^2)^2) = O(n^4) with quadratic
attention, against O(n^6) for raster order. The script fits the exponent a of FLOPs ~ n^a and time ~ n^a
between successive resolutions: the linear layers contribute n^2 (tokens) and the attention n^4, so the local
exponent approaches 4 from below as the attention share grows.

Examples::

    python benchmarks/scaling.py                               # FLOPs for all, time for d16 at 256 and 512
    python benchmarks/scaling.py --time-sizes 256 512 768 --time-depths 16 20 24
"""
import argparse
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)
from restorevar_plugin.archs.restorevar_arch import RestoreVARTransformer
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE

OFFICIAL_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
SIZES = (256, 512, 768, 1024)
DEPTHS = (16, 20, 24)
DOWNSAMPLE = 16


def patch_schedule(size):
    """The ten-scale schedule of the official 512-px shape for ``size`` px (see the module docstring)."""
    side = size // DOWNSAMPLE
    schedule = [1]
    for fraction in OFFICIAL_512[1:]:
        schedule.append(max(schedule[-1] + 1, math.floor(fraction / OFFICIAL_512[-1] * side + 0.5)))
    if schedule[-1] != side:
        raise ValueError(f'{size} px: schedule {schedule} does not end at the latent side {side}')
    return tuple(schedule)


def build(depth, patch_nums, device):
    """Transformer and a quantizer-equivalent narrow VQVAE (generation uses only its quantizer), eval mode."""
    with torch.device(device):
        vqvae = MultiScaleVQVAE(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, patch_nums=patch_nums).eval()
        transformer = RestoreVARTransformer(depth=depth, patch_nums=patch_nums).eval()
    return transformer, vqvae


@torch.no_grad()
def generation_flops(depth, patch_nums):
    """FLOPs of one greedy generation (batch 1), counted on ``meta``."""
    transformer, vqvae = build(depth, patch_nums, 'meta')
    cond = torch.zeros(1, transformer.z_channels, patch_nums[-1], patch_nums[-1], device='meta')
    counter = FlopCounterMode(display=False)
    with counter:
        transformer.generate(cond, vqvae)
    return counter.get_total_flops()


def raster_flops(depth, side, kv_cache):
    """FLOPs of raster-order AR over the ``side**2`` tokens of the last scale with the same transformer.

    Per token and block: self-attention projections 4 C^2, FFN 8 C^2, cross-attention q/out 2 C^2 (all x2 FLOPs),
    attention over the condition 2 * 2 C n^2, and self-attention over the prefix 2 * 2 C t for the t-th token;
    plus the head 2 C V per token and the condition K/V 2 * n^2 * 2 C^2 per block once. Without a KV cache step
    t recomputes every layer for all t prefix tokens (VAR's O(n^6) assumption).
    """
    width, vocab, tokens = 64 * depth, 4096, side * side
    linear = 2 * (4 + 8 + 2) * width**2 + 2 * 2 * width * tokens  # per token per block, without self-attention
    head = 2 * width * vocab
    cond_kv = depth * 2 * tokens * 2 * width**2
    if kv_cache:
        prefix_attention = depth * 2 * 2 * width * tokens * (tokens + 1) / 2
        return tokens * (depth * linear + head) + prefix_attention + cond_kv
    steps = torch.arange(1, tokens + 1, dtype=torch.float64)
    per_step = steps * (depth * linear + head) + depth * 2 * 2 * width * steps * (steps + 1) / 2
    return float(per_step.sum()) + cond_kv


@torch.no_grad()
def generation_seconds(depth, patch_nums, repeats):
    """Best wall time of ``repeats`` greedy generations (batch 1, CPU, fp32)."""
    transformer, vqvae = build(depth, patch_nums, 'cpu')
    cond = torch.randn(1, transformer.z_channels, patch_nums[-1], patch_nums[-1])
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        transformer.generate(cond, vqvae)
        best = min(best, time.perf_counter() - start)
    return best


def local_exponents(sides, values):
    """``log(v_{i+1} / v_i) / log(n_{i+1} / n_i)`` between successive points."""
    return [math.log(b / a) / math.log(m / n) for n, m, a, b in zip(sides, sides[1:], values, values[1:])]


def plot(path, sides, flops, raster, raster_cached, times):
    """Log-log plot of FLOPs (left) and measured time (right) against the latent side n."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for depth, values in flops.items():
        left.loglog(sides, values, 'o-', label=f'next-scale d{depth}')
    left.loglog(sides, raster, 's--', label='raster AR d16, no KV cache')
    left.loglog(sides, raster_cached, 's:', label='raster AR d16, KV cache')
    reference = flops[DEPTHS[0]][-1]
    left.loglog(sides, [reference * (n / sides[-1])**4 for n in sides], 'k:', lw=0.8, label='~ n^4')
    left.set(xlabel='latent side n (= px / 16)', ylabel='FLOPs per image', title='generation FLOPs (meta count)')
    left.legend(fontsize=8)
    for depth, points in times.items():
        if points:
            right.loglog([n for n, _ in points], [t for _, t in points], 'o-', label=f'd{depth}')
    right.set(xlabel='latent side n', ylabel='seconds', title='generation wall time (CPU, batch 1, fp32)')
    if any(times.values()):
        right.legend(fontsize=8)
    figure.tight_layout()
    tmp = path.with_suffix('.tmp.png')
    figure.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--time-sizes', nargs='*', type=int, default=[256, 512], choices=SIZES)
    parser.add_argument('--time-depths', nargs='*', type=int, default=[16],
                        help='depths to time (any; smaller ones where d16-d24 are too slow)')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--out', default='benchmarks/scaling.png', help='PNG plot path')
    args = parser.parse_args()
    schedules = {size: patch_schedule(size) for size in SIZES}
    sides = [size // DOWNSAMPLE for size in SIZES]
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f} '
          f'on {os.cpu_count()} cores')
    print('patch schedules (rule: pn_k = max(pn_{k-1} + 1, round(official512_k / 32 * n))):')
    for size, schedule in schedules.items():
        print(f'  {size:>5} px  n={size // DOWNSAMPLE:>3}  L={sum(p * p for p in schedule):>6}  {schedule}')

    flops = {depth: [generation_flops(depth, schedules[size]) for size in SIZES] for depth in DEPTHS}
    raster = [raster_flops(DEPTHS[0], n, kv_cache=False) for n in sides]
    raster_cached = [raster_flops(DEPTHS[0], n, kv_cache=True) for n in sides]
    times = {depth: [] for depth in args.time_depths}
    for depth in args.time_depths:
        for size in args.time_sizes:
            seconds = generation_seconds(depth, schedules[size], args.repeats)
            times[depth].append((size // DOWNSAMPLE, seconds))
            print(f'  timed d{depth} {size} px: {seconds:.2f} s (load average {os.getloadavg()[0]:.2f})', flush=True)

    print(f'\n{"px":>5} {"n":>3} ' + ' '.join(f'{"d" + str(d) + " TFLOPs":>11}' for d in DEPTHS)
          + f' {"raster-noKV d16":>15} {"raster-KV d16":>13} ' + ' '.join(f'{"d" + str(d) + " s":>8}' for d in times))
    for index, size in enumerate(SIZES):
        side = sides[index]
        timed = ' '.join(f'{dict(times[d]).get(side, float("nan")):8.2f}' for d in times)
        print(f'{size:>5} {side:>3} ' + ' '.join(f'{flops[d][index] / 1e12:11.3f}' for d in DEPTHS)
              + f' {raster[index] / 1e12:15.1f} {raster_cached[index] / 1e12:13.3f} {timed}')
    print('\nlocal exponents a (value ~ n^a) between successive resolutions:')
    for depth in DEPTHS:
        print(f'  next-scale FLOPs d{depth}: ' + ', '.join(f'{a:.2f}' for a in local_exponents(sides, flops[depth])))
    print('  raster AR FLOPs d16, no KV cache: ' + ', '.join(f'{a:.2f}' for a in local_exponents(sides, raster)))
    print('  raster AR FLOPs d16, KV cache:    ' + ', '.join(f'{a:.2f}' for a in local_exponents(sides, raster_cached)))
    for depth, points in times.items():
        if len(points) > 1:
            exps = local_exponents([n for n, _ in points], [t for _, t in points])
            print(f'  measured time d{depth}: ' + ', '.join(f'{a:.2f}' for a in exps))
    print('next-scale / raster AR (no KV cache) FLOPs, d16: '
          + ', '.join(f'n={n}: {a / b:.2e}' for n, a, b in zip(sides, flops[DEPTHS[0]], raster)))
    out = Path(args.out)
    plot(out, sides, flops, raster, raster_cached, times)
    print(f'plot written to {out}')


if __name__ == '__main__':
    main()
