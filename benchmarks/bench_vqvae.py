"""Time the full-size MultiScaleVQVAE (random weights) per image: encode, quantize, decode at 256 and 512 px.

Usage: ``python benchmarks/bench_vqvae.py [--repeats 2] [--batch 1] [--threads N] [--channels-last]
[--retain-cpu-memory]``

Prints one row per resolution with the median wall time per image (eval mode, ``torch.no_grad``, float32,
CPU unless CUDA is available) of: ``encode`` = ``encode_latent`` (encoder + quant_conv), ``quantize`` =
``quantize.latent_to_indices`` (all scales), ``teacher`` = ``quantize.teacher_input``, ``decode`` =
``quantize.indices_to_fhat`` + ``decode_latent``. One untimed warm-up call precedes the timed repeats.
The encoder's and decoder's arithmetic rates (GFLOP/s: FLOPs = 2 x multiply-adds of one call, counted by
``restorevar_plugin.benchmark.cost.count_flops``, over its median time) show how close the convolutions run
to the CPU's peak. ``--channels-last`` and ``--retain-cpu-memory`` run them as inference does by default
(``val.channels_last``, ``val.retain_cpu_memory``: the layout oneDNN prefers, freed memory kept for reuse).
"""
import argparse
import os
import statistics
import time

import torch
from patch_schedules import PATCH_NUMS

from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE
from restorevar_plugin.benchmark.cost import count_flops
from restorevar_plugin.models.cpu_heap import retained_cpu_heap


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_call(repeats, device, fn, *args):
    """Median seconds of ``repeats`` calls ``fn(*args)`` after one warm-up call; returns (seconds, last result)."""
    result = fn(*args)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn(*args)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def decode_indices(net, indices):
    """Image ``(B, 3, H, W)`` in [-1, 1] from per-scale indices."""
    return net.decode_latent(net.quantize.indices_to_fhat(indices))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    parser.add_argument('--channels-last', action='store_true', help='encoder and decoder in channels-last')
    parser.add_argument('--retain-cpu-memory', action='store_true', help='keep freed CPU memory for reuse')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.manual_seed(0)
    weights = None
    print(f'torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, fp32, random weights, '
          f'batch {args.batch}, median of {args.repeats}, seconds per image; load average '
          f'{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes skew the times)')
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    print(f'{"px":>5} {"encode":>8} {"quantize":>9} {"teacher":>8} {"decode":>8} {"encode GFLOP/s":>15} '
          f'{"decode GFLOP/s":>15}')
    for size, patch_nums in PATCH_NUMS.items():
        net = MultiScaleVQVAE(patch_nums=patch_nums).eval().requires_grad_(False).to(device)
        if weights is None:
            weights = net.state_dict()
        else:  # same random weights at every size; ema_vocab_hit_SV keeps its own scale count
            net.load_state_dict(weights, strict=True)
        net = net.to(memory_format=memory_format)
        img = (torch.rand(args.batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=memory_format)
        with torch.no_grad(), retained_cpu_heap(args.retain_cpu_memory and device.type == 'cpu'):
            t_encode, latent = time_call(args.repeats, device, net.encode_latent, img)
            t_quantize, indices = time_call(args.repeats, device, net.quantize.latent_to_indices, latent)
            t_teacher, _ = time_call(args.repeats, device, net.quantize.teacher_input, indices)
            t_decode, _ = time_call(args.repeats, device, decode_indices, net, indices)
            encode_flops = count_flops(net.encode_latent, img)[1]
            decode_flops = count_flops(decode_indices, net, indices)[1]
        per_image = [t / args.batch for t in (t_encode, t_quantize, t_teacher, t_decode)]
        print(f'{size:>5} ' + ' '.join(f'{t:>8.3f}' for t in per_image)
              + f' {encode_flops / t_encode / 1e9:>15.0f} {decode_flops / t_decode / 1e9:>15.0f}')


if __name__ == '__main__':
    main()
