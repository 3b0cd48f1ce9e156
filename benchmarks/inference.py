"""Per-component wall time and peak memory of RestoreVAR inference: our path against the official procedure.

One run, same random weights (the full configuration: VQVAE ch 160, transformer d16, refiner 384 x 12), same
images and CPU, so the printed ratios are measured under the same load. Variants, per size and batch:

* ``official``: :func:`official_procedure.official_restore` (all encoder taps, cross-attention K/V recomputed
  in every block at every scale, explicit-matmul attention, one image at a time, NCHW fp32);
* ``official-retained``: the same inside :func:`~restorevar_plugin.models.cpu_heap.retained_cpu_heap`, i.e. with
  the allocator setting ``val.retain_cpu_memory`` gives our path (how much of a ratio is memory reuse, which
  any code gains, rather than removed work);
* ``fp32-nchw``: ``RestoreVARModel.restore`` exact, with ``val.channels_last: false`` (the layout ablation);
* ``fp32-unpacked``: ``RestoreVARModel.restore`` exact, with ``val.prepacked_linears: false`` (the transformer's
  Linear layers through ``F.linear``, not oneDNN-prepacked weights: the ablation of that);
* ``fp32-unretained``: ``RestoreVARModel.restore`` exact, with ``val.retain_cpu_memory: false`` (freed memory
  returned to the kernel and page-faulted in again, glibc's default: the ablation of that);
* ``fp32``: ``RestoreVARModel.restore`` exact (channels-last VQVAE, prepacked Linear weights, freed CPU memory
  retained for reuse), the default;
* ``bf16-unpacked``: the same with ``val.prepacked_linears: false`` (weights cast to bf16 once, ``F.linear``);
* ``bf16``: ``RestoreVARModel.restore`` with ``val.precision: bf16``.

Also timed: one teacher-forced forward of the transformer over the same tokens (the floor of next-scale
generation), against our KV-cached generation (target <= 1.15x). Peak memory is the peak resident set size
of the process during each component (Linux ``/proc/self/clear_refs``), minus the resident size before it:
the memory the component adds on top of the weights; on GPU ``torch.cuda.max_memory_allocated``.

Examples::

    python benchmarks/inference.py --sizes 256 --batches 1 8        # ~10 min on 2 idle cores
    python benchmarks/inference.py --sizes 512 --batches 1 --variants official fp32 bf16
    python benchmarks/inference.py --sizes 256 --batches 1 --profile    # + torch.profiler top operators
"""
import argparse
import contextlib
import copy
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_procedure import official_restore  # noqa: E402
from patch_schedules import PATCH_NUMS  # noqa: E402

from restorevar_plugin.models.cpu_heap import retained_cpu_heap  # noqa: E402
from restorevar_plugin.models.inference_options import channels_last_requested, inference_dtype  # noqa: E402

STEPS = ('encoder', 'generation', 'refiner', 'decoder')
# the ``val`` options of each variant of ``RestoreVARModel.restore``: the defaults, with what each one changes
DEFAULT_OPTIONS = {'precision': 'fp32', 'channels_last': True, 'prepacked_linears': True, 'retain_cpu_memory': True}
VARIANT_OPTIONS = {name: {**DEFAULT_OPTIONS, **changes} for name, changes in {
    'fp32-nchw': {'channels_last': False},
    'fp32-unpacked': {'prepacked_linears': False},
    'fp32-unretained': {'retain_cpu_memory': False},
    'fp32': {},
    'bf16-unpacked': {'precision': 'bf16', 'prepacked_linears': False},
    'bf16': {'precision': 'bf16'},
}.items()}
# the official procedure, under glibc's default allocation and with the memory reuse of ``val.retain_cpu_memory``
OFFICIAL_VARIANTS = ('official', 'official-retained')
VARIANTS = (*OFFICIAL_VARIANTS, *VARIANT_OPTIONS)


def cpu_name():
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown CPU'


def _status_kib(field):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise RuntimeError(f'{field} missing from /proc/self/status')


class ComponentMeter:
    """``measure(name)`` context manager: wall seconds and peak added memory (MiB) per named step.

    Has the interface of ``RestoreVARModel``'s ``StepTimer`` (``measure``, ``images``) so that ``restore``
    and the official procedure report into it. Each step is also a ``record_function`` range for the profiler.
    """

    def __init__(self, device):
        self.device = device
        self.seconds = defaultdict(float)
        self.peak_mib = defaultdict(float)
        self.images = 0
        self.preparation = 0.0  # seconds of one-time setup before the timed steps

    def _sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _reset_peak(self):
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device)
        Path('/proc/self/clear_refs').write_text('5')  # resets VmHWM to the current resident size
        return _status_kib('VmRSS') * 1024

    def _peak(self):
        if self.device.type == 'cuda':
            return torch.cuda.max_memory_allocated(self.device)
        return _status_kib('VmHWM') * 1024

    @contextlib.contextmanager
    def measure(self, name):
        self._sync()
        before = self._reset_peak()
        start = time.perf_counter()
        with record_function(name):
            yield
        self._sync()
        self.seconds[name] += time.perf_counter() - start
        self.peak_mib[name] = max(self.peak_mib[name], (self._peak() - before) / 2**20)

    def total(self):
        return sum(self.seconds[step] for step in STEPS)


def model_options(size, device):
    """Option dict of a test-mode ``RestoreVARModel`` with the official configuration at ``size`` px."""
    patch_nums = list(PATCH_NUMS[size])
    seq_len = sum(pn * pn for pn in patch_nums)
    return {
        'name': f'bench_{size}', 'model_type': 'RestoreVARModel', 'is_train': False, 'dist': False, 'rank': 0,
        'world_size': 1, 'num_gpu': 1 if device.type == 'cuda' else 0, 'path': {},
        'network_vqvae': {'type': 'MultiScaleVQVAE', 'patch_nums': patch_nums},
        'network_g': {'type': 'RestoreVARTransformer', 'depth': 16, 'patch_nums': patch_nums},
        'network_refiner': {'type': 'LatentRefinerTransformer', 'seq_len': patch_nums[-1]**2, 'seq_len_cond': seq_len},
        'val': {'precision': 'fp32', 'channels_last': True},
    }


def build_test_model(opt):
    """``basicsr.models.build_model`` (imported here: basicsr must come after the plugin's shims)."""
    from basicsr.models import build_model
    return build_model(opt)


def run_variant(variant, model, reference_vqvae, images, device):
    """Time one variant on ``images`` ``(B, 3, R, R)``; returns (meter, restored images, per-scale indices)."""
    meter = ComponentMeter(device)
    if variant in OFFICIAL_VARIANTS:
        with retained_cpu_heap(variant == 'official-retained'):
            out = official_restore(reference_vqvae, model.net_g, model.net_refiner, images, timer=meter.measure)
        return meter, out['image'], out['indices']
    val = model.opt['val']
    options = VARIANT_OPTIONS[variant]
    if channels_last_requested(val) != options['channels_last']:  # the layout is applied at a test run's first restore
        model._inference_prepared = False
    val.update(options)
    start = time.perf_counter()  # one-time setup of a test run, not counted per image (as `basicsr benchmark`)
    model.prepare_inference()
    with model.transformer_linears(model.net_g, inference_dtype(val, device)):  # prepares this precision's weights
        meter.preparation = time.perf_counter() - start
    captured = {}
    generate = model.net_g.generate

    def generate_and_keep(*args, **kwargs):
        captured['result'] = generate(*args, **kwargs)
        return captured['result']

    model.net_g.generate = generate_and_keep
    try:
        restored = model.restore(images, timer=meter)
    finally:
        del model.net_g.generate
    return meter, restored, captured['result'].indices


@torch.no_grad()
def teacher_forced_seconds(model, images, indices):
    """Wall time of one teacher-forced transformer forward over the generated tokens (fp32), with the
    Linear weights and the memory reuse exact generation has (``RestoreVARModel.transformer_linears``,
    ``inference_memory``)."""
    vqvae, transformer = model.net_vqvae, model.net_g
    cond = vqvae.encode_features(images.contiguous(memory_format=torch.channels_last))
    teacher_input = vqvae.quantize.teacher_input(indices)
    with model.inference_memory(), model.transformer_linears(transformer, None):
        start = time.perf_counter()
        transformer(cond, teacher_input)
        return time.perf_counter() - start


def psnr(a, b):
    """PSNR in dB between images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean().item()
    return float('inf') if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


def load_line():
    one, five, _ = os.getloadavg()
    return f'load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', nargs='+', type=int, default=[256, 512], choices=sorted(PATCH_NUMS))
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument('--repeats', type=int, default=1, help='rounds over the variants (fastest kept)')
    parser.add_argument('--official-max-batch', type=int, default=1,
                        help='run the official procedure only for batches up to this (it runs image by image: its '
                        'time per image does not depend on the batch)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--no-teacher', action='store_true', help='skip the teacher-forced forward')
    parser.add_argument('--profile', action='store_true', help='print torch.profiler top operators of fp32')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    print(f'CPU {cpu_name()}; {torch.get_num_threads()} torch threads; torch {torch.__version__}; device {device}; '
          f'random weights (full config: VQVAE 108.9 M, d16 transformer, refiner 384 x 12)')
    print(f'start: {load_line()}')
    official_per_image, per_image = {}, {}
    for size in args.sizes:
        torch.manual_seed(0)
        model = build_test_model(model_options(size, device))
        reference_vqvae = copy.deepcopy(model.net_vqvae)  # stays NCHW, as the official code runs
        for batch in args.batches:
            images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch), device=device)
            images = images * 2 - 1
            results = {}
            variants = [v for v in args.variants if v not in OFFICIAL_VARIANTS or batch <= args.official_max_batch]
            for _ in range(args.repeats):  # rounds over the variants, so that load changes hit all of them
                for variant in variants:
                    run = run_variant(variant, model, reference_vqvae, images, device)
                    if variant not in results or run[0].total() < results[variant][0].total():
                        results[variant] = run
                    print(f'  [{size} px, batch {batch}] {variant}: {run[0].total():.2f} s (one-time preparation '
                          f'{run[0].preparation:.2f} s), {load_line()}', flush=True)
            teacher = None
            if not args.no_teacher and 'fp32' in results:
                teacher = min(teacher_forced_seconds(model, images, results['fp32'][2]) for _ in range(args.repeats))
            if 'official' in results:
                official_per_image[size] = results['official'][0].total() / batch
            for variant, (meter, _, _) in results.items():
                per_image[(size, batch, variant)] = meter.total() / batch
            report(size, batch, results, teacher, official_per_image.get(size))
            if args.profile and batch == args.batches[0]:
                profile_fp32(model, reference_vqvae, images, device)
    for (size, batch, variant), seconds in per_image.items():
        if batch != 1 and variant not in OFFICIAL_VARIANTS and (size, 1, variant) in per_image:
            gain = per_image[(size, 1, variant)] / seconds
            print(f'{size} px {variant}: batch {batch} per-image throughput = {gain:.2f}x batch 1 (target >= 1.5x)')
    print(f'end: {load_line()}')


def report(size, batch, results, teacher, official_per_image):
    """Print the per-component table of one size and batch, with ratios to the official procedure.

    ``official_per_image`` (seconds, from this run's smallest batch) gives the ratio when the official
    procedure was not run at this batch.
    """
    print(f'\n{size} px, batch {batch}: seconds per image (peak added MiB) per component')
    print(f'{"variant":>10} ' + ' '.join(f'{step:>17}' for step in STEPS) + f' {"total s/img":>11} {"vs official":>11}')
    official = results.get('official')
    for variant, (meter, _, _) in results.items():
        cells = ' '.join(f'{meter.seconds[step] / batch:8.3f} ({meter.peak_mib[step]:6.0f})' for step in STEPS)
        ratio = f'{meter.total() / batch / official_per_image:10.3f}x' if official_per_image else ''
        print(f'{variant:>10} {cells} {meter.total() / batch:11.3f} {ratio:>11}')
    if official:
        for variant, (meter, _, _) in results.items():
            if variant == 'official':
                continue
            ratios = ' '.join(f'{step} {meter.seconds[step] / official[0].seconds[step]:.3f}x' for step in STEPS)
            print(f'  {variant} / official per component: {ratios}')
    reference_name = next((name for name in ('official', 'fp32') if name in results), next(iter(results)))
    reference = results[reference_name]
    for variant, (_, restored, indices) in results.items():
        same = sum(int((a == b).sum()) for a, b in zip(indices, reference[2]))
        total = sum(a.numel() for a in indices)
        print(f'  {variant}: greedy indices equal to {reference_name} {same}/{total} '
              f'({100 * same / total:.2f}%), max |image diff| {(restored - reference[1]).abs().max().item():.2e}, '
              f'PSNR {psnr(restored, reference[1]):.1f} dB')
    if teacher is not None:
        generation = results['fp32'][0].seconds['generation']
        print(f'  generation (KV cache, fp32) {generation:.2f} s vs one teacher-forced forward over the same tokens '
              f'{teacher:.2f} s: {generation / teacher:.3f}x (target <= 1.15x)')
    print()


def profile_fp32(model, reference_vqvae, images, device):
    """torch.profiler of one exact restore and one official run: per-component totals and top operators."""
    for variant in ('official', 'fp32'):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run_variant(variant, model, reference_vqvae, images, device)
        print(f'--- torch.profiler, {variant}, top operators by self CPU time')
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15, max_name_column_width=45))


if __name__ == '__main__':
    main()
