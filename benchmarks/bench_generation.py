"""Wall time of RestoreVAR's greedy next-scale generation, with and without the KV cache.

Random weights; the condition is random ``(B, 32, G, G)`` features (the VQVAE encoder is not timed here, see
``flops_inference.py`` for the whole pipeline). Only the VQVAE's quantizer (codebook lookup, phi convs,
resizing) takes part in generation, so a narrow VQVAE (``ch=32``) stands in for the full one: the quantizer
is the same.

Examples::

    python benchmarks/bench_generation.py --quick                # tiny + d16 at 256 px, batch 1 (~1 min)
    python benchmarks/bench_generation.py                        # tiny + d16, 256 and 512 px, batch 1
    python benchmarks/bench_generation.py --configs d16 --sizes 512 --batches 1 8   # minutes on 2 cores
"""
import argparse
import os
import time

import torch
from patch_schedules import PATCH_NUMS

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)
from restorevar_plugin.archs.restorevar_arch import RestoreVARTransformer
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE

CONFIGS = {
    'tiny': dict(depth=2, embed_dim=128, num_heads=2),
    'd16': dict(depth=16),
}


def build(config, size):
    """Random-weight transformer of ``config`` and a quantizer-equivalent VQVAE for ``size`` px, in eval mode."""
    patch_nums = PATCH_NUMS[size]
    vqvae = MultiScaleVQVAE(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, patch_nums=patch_nums).eval()
    transformer = RestoreVARTransformer(patch_nums=patch_nums, **CONFIGS[config]).eval()
    return transformer, vqvae


def time_generation(transformer, vqvae, batch, use_kv_cache, repeats):
    """Best wall time in seconds of ``repeats`` generations of ``batch`` images."""
    grid = transformer.patch_nums[-1]
    cond = torch.randn(batch, transformer.z_channels, grid, grid)
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        transformer.generate(cond, vqvae, use_kv_cache=use_kv_cache)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+', default=['tiny', 'd16'], choices=sorted(CONFIGS))
    parser.add_argument('--sizes', nargs='+', type=int, default=[256, 512], choices=sorted(PATCH_NUMS))
    parser.add_argument('--batches', nargs='+', type=int, default=[1])
    parser.add_argument('--cache', nargs='+', default=['on', 'off'], choices=['on', 'off'])
    parser.add_argument('--repeats', type=int, default=1, help='timed runs per case (the best is reported)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--quick', action='store_true', help='only 256 px, batch 1')
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.batches = [256], [1]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, fp32, random weights; '
          f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes skew the times)')
    print(f'{"config":>6} {"px":>4} {"batch":>5} {"kv cache":>8} {"seconds":>9} {"s/image":>8}')
    with torch.no_grad():
        time_generation(*build('tiny', 256), batch=1, use_kv_cache=True, repeats=1)  # warm up the thread pool
        for config in args.configs:
            for size in args.sizes:
                transformer, vqvae = build(config, size)
                for batch in args.batches:
                    seconds = {}
                    for cache in args.cache:
                        seconds[cache] = time_generation(transformer, vqvae, batch, cache == 'on', args.repeats)
                        print(f'{config:>6} {size:>4} {batch:>5} {cache:>8} {seconds[cache]:9.3f} '
                              f'{seconds[cache] / batch:8.3f}', flush=True)
                    if len(seconds) == 2:
                        print(f'{"":>6} {"":>4} {"":>5} {"speed-up":>8} {seconds["off"] / seconds["on"]:8.2f}x')


if __name__ == '__main__':
    main()
