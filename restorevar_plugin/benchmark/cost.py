"""Cost of a method, counted one way for every row: parameters, FLOPs, network evaluations, time, memory.

Convention: **FLOPs = 2 x multiply-adds**, counted by :class:`torch.utils.flop_counter.FlopCounterMode` around one
``feed_data`` + ``test`` call of the model on one image at the benchmark resolution (everything the model runs
per image: for RestoreVAR encoder, the 10-scale generation, refiner and decoder). FlopCounterMode has no formula
for the CPU kernel of ``scaled_dot_product_attention`` (``_scaled_dot_product_flash_attention_for_cpu``) and
would count it as 0; :data:`EXTRA_FLOP_FORMULAS` gives it the formula torch uses for the GPU kernels, so CPU and
GPU counts agree. Normalisation, softmax and element-wise operations are not counted (FlopCounterMode counts
matrix products and convolutions only).

Peak memory (:data:`MEMORY_DEFINITION`): the most tensor memory torch's allocator held at once during that same
``test()`` call, above what it held just before (the weights, the input already on the device, anything the model
keeps): on CUDA ``torch.cuda.max_memory_allocated`` minus ``torch.cuda.memory_allocated`` before; on CPU the peak
of the running sum of every allocation and free of the CPU allocator, as recorded by ``torch.profiler`` with
``profile_memory=True``. Both count what torch allocates (tensors and kernel buffers), not the process's resident
size, whose increase depends on what the C allocator kept from earlier images or methods.

The latent-diffusion reference (:func:`latent_diffusion_reference`) counts the Stable Diffusion 1.5 UNet the
same way: built from its published configuration on the ``meta`` device (no weights, no download), one step on a
64x64x4 latent (512 px) with 77 text tokens.
"""
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode
from torch.profiler import DeviceType, ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """FLOPs of the CPU attention kernel from the shapes of query, key and value: ``Q K^T`` and ``softmax(.) V``,
    the formula torch registers for its GPU attention kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flops}

# The UNet configuration of Stable Diffusion 1.5 (unet/config.json of the runwayml/stable-diffusion-v1-5
# release), written out as data so that the model can be built without any download.
SD15_UNET_CONFIG = {
    'sample_size': 64,
    'in_channels': 4,
    'out_channels': 4,
    'center_input_sample': False,
    'flip_sin_to_cos': True,
    'freq_shift': 0,
    'down_block_types': ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    'up_block_types': ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    'block_out_channels': [320, 640, 1280, 1280],
    'layers_per_block': 2,
    'downsample_padding': 1,
    'mid_block_scale_factor': 1,
    'act_fn': 'silu',
    'norm_num_groups': 32,
    'norm_eps': 1e-5,
    'cross_attention_dim': 768,
    'attention_head_dim': 8,
}
SD15_TEXT_TOKENS = 77
SD15_LATENT_FACTOR = 8  # the SD VAE downsamples by 8: 512 px images are 64x64 latents

# RestoreVAR paper, Table 5 (Appendix B, "Detailed computation complexity comparisons"): Diff-Plugin, an
# SD-1.5 based all-in-one restorer with 20 steps.
PAPER_DIFF_PLUGIN = {'time_s': 2.04, 'tflops': 16.08, 'params_m': 859.50, 'source': 'RestoreVAR paper Table 5'}


MEMORY_DEFINITION = ('Peak memory / image: the most tensor memory torch held at once during the test() call of '
                     'the counted image, above what it held just before (weights, input, model caches); CUDA: '
                     'torch.cuda.max_memory_allocated minus memory_allocated before; CPU: peak of the running sum of '
                     'the CPU allocator\'s allocations and frees recorded by torch.profiler (profile_memory=True). '
                     'Not the process resident size.')
CPU_ALLOCATOR_DEVICES = (DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP)
PROFILER_MEMORY_EVENT = '[memory]'


def flop_counter():
    """A silent :class:`FlopCounterMode` with :data:`EXTRA_FLOP_FORMULAS`."""
    return FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)


def count_flops(function, *args, **kwargs):
    """Run ``function(*args, **kwargs)`` under :func:`flop_counter`; return ``(result, FLOPs)`` (2 x MACs)."""
    counter = flop_counter()
    with counter:
        result = function(*args, **kwargs)
    return result, counter.get_total_flops()


def model_networks(model):
    """``{attribute: bare nn.Module}`` of a BasicSR model's networks (its ``net_*`` attributes)."""
    networks = {}
    for name, value in vars(model).items():
        if name.startswith('net_') and isinstance(value, torch.nn.Module):
            networks[name] = model.get_bare_model(value)
    return networks


def parameter_count(module):
    """Number of parameters of ``module`` (shared tensors once)."""
    return sum(parameter.numel() for parameter in {id(p): p for p in module.parameters()}.values())


@dataclass
class MeasuredCost:
    """Cost of one method on one image (FLOPs, parameters, peak memory) and over the benchmark (time).

    Attributes:
        resolution (str): ``'HxW'`` of the counted image.
        flops (int): FLOPs (2 x multiply-adds) per image.
        params (int): Parameters of all networks the model holds.
        params_run (int): Parameters read by any operation for the image.
        networks (dict): ``{attribute: (parameters, parameters run)}``.
        evaluations (int): Sequential evaluations of the main network per image.
        time_s (float | None): Median wall time per image after warm-up (None: no timed image).
        timed_images (int): Images in the median.
        peak_memory_mib (float | None): Peak memory of the counted image in MiB (:data:`MEMORY_DEFINITION`).
    """

    resolution: str
    flops: int
    params: int
    params_run: int
    networks: dict
    evaluations: int
    time_s: object = None
    timed_images: int = 0
    peak_memory_mib: object = None


def network_evaluations(model):
    """Sequential evaluations of the main network per image: RestoreVAR's transformer runs once per scale
    (``len(net_g.patch_nums)``, 10 officially); single-pass networks 1."""
    from restorevar_plugin.models.restorevar_model import RestoreVARModel

    if isinstance(model, RestoreVARModel) and model.net_g is not None:
        return len(model.get_bare_model(model.net_g).patch_nums)
    return 1


class ParameterUse(TorchFunctionMode):
    """Records which of ``parameters`` appear as an argument of any torch function while the mode is active
    (module calls, functional calls such as ``F.linear(x, weight)``, indexing of a codebook ...)."""

    def __init__(self, parameters):
        super().__init__()
        self.watched = {id(parameter) for parameter in parameters}
        self.used = set()

    def _visit(self, value):
        if isinstance(value, torch.Tensor):
            if id(value) in self.watched:
                self.used.add(id(value))
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                self._visit(item)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._visit(args)
        self._visit(kwargs)
        return func(*args, **kwargs)


@contextmanager
def _native_stderr_silenced():
    """Discard what native code writes to file descriptor 2 inside the block (the profiler's start / stop banners);
    the descriptor is restored on exit."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'wb') as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_bytes(function):
    """Run ``function()``; return ``(result, peak bytes)``: the maximum over time of the running sum of the CPU
    allocator's allocations (+) and frees (-) recorded by ``torch.profiler`` (``profile_memory=True``), i.e. the
    most memory held at once above the level at the start (memory freed that was allocated before counts as 0)."""
    profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _native_stderr_silenced():
        profiler.start()
    try:
        result = function()
    finally:
        with _native_stderr_silenced():
            profiler.stop()
    records = sorted((event for event in profiler.profiler.kineto_results.events()
                      if event.name() == PROFILER_MEMORY_EVENT and event.device_type() in CPU_ALLOCATOR_DEVICES),
                     key=lambda event: event.start_ns())
    live = peak = 0
    for record in records:
        live += record.nbytes()
        peak = max(peak, live)
    return result, peak


def cuda_peak_bytes(function, device):
    """Run ``function()`` on ``device``; return ``(result, peak bytes)``: ``torch.cuda.max_memory_allocated`` during
    the call minus ``torch.cuda.memory_allocated`` before it (the device synchronised on both sides)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = function()
    torch.cuda.synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) - before


def peak_memory_bytes(function, device):
    """``(function(), peak bytes)`` under :data:`MEMORY_DEFINITION` on ``device`` (CUDA or CPU)."""
    device = torch.device(device)
    if device.type == 'cuda':
        return cuda_peak_bytes(function, device)
    if device.type != 'cpu':
        raise ValueError(f'peak memory: device {device} is neither CPU nor CUDA')
    return cpu_peak_bytes(function)


def count_model_cost(model, batch, device):
    """FLOPs, parameters and peak memory of one ``feed_data(batch)`` + ``test()`` of ``model`` on ``device``.

    ``batch`` holds one image. Parameters "run" are those any torch operation read during the pass
    (:class:`ParameterUse`); peak memory follows :data:`MEMORY_DEFINITION` (the ``test()`` call only, the input
    already fed). A model's one-time ``prepare_inference()`` (layout conversion, compilation) runs first and is
    not counted.
    """
    if hasattr(model, 'prepare_inference'):
        model.prepare_inference()
    networks = model_networks(model)
    parameters = [parameter for network in networks.values() for parameter in network.parameters()]
    model.feed_data(batch)
    with ParameterUse(parameters) as use:
        (_, flops), peak_bytes = peak_memory_bytes(lambda: count_flops(model.test), device)
    breakdown = {}
    for name, network in networks.items():
        unique = {id(parameter): parameter for parameter in network.parameters()}
        breakdown[name] = (parameter_count(network),
                           sum(parameter.numel() for key, parameter in unique.items() if key in use.used))
    height, width = batch['lq'].shape[-2:]
    return MeasuredCost(resolution=f'{height}x{width}', flops=int(flops),
                        params=sum(total for total, _ in breakdown.values()),
                        params_run=sum(run for _, run in breakdown.values()), networks=breakdown,
                        evaluations=network_evaluations(model), peak_memory_mib=peak_bytes / 2**20)


def median_time(seconds, warmup):
    """Median of per-image ``seconds`` after dropping the first ``warmup`` values; ``(median | None, count)``."""
    timed = sorted(float(value) for value in list(seconds)[warmup:] if value is not None)
    if not timed:
        return None, 0
    middle = len(timed) // 2
    median = timed[middle] if len(timed) % 2 else (timed[middle - 1] + timed[middle]) / 2
    return median, len(timed)


@dataclass
class ReferenceCost:
    """A reference row counted the same way (no weights, no data): the latent-diffusion restorer's UNet."""

    label: str
    resolution: str
    flops: int
    params: int
    evaluations: int
    paper: dict


def latent_diffusion_reference(steps=20, size=512):
    """Cost of a Stable-Diffusion-1.5-based restorer: the UNet, counted on ``meta``, one step and ``steps`` steps.

    Args:
        steps (int): Denoising steps of the restorer (Diff-Plugin: 20).
        size (int): Image side in pixels (latent side ``size // 8``).

    Returns:
        list[ReferenceCost]: One step, then ``steps`` steps (with the paper's Diff-Plugin figures).

    Raises:
        ImportError: ``diffusers`` is not installed (``pip install diffusers``).
    """
    from diffusers import UNet2DConditionModel

    side = size // SD15_LATENT_FACTOR
    with torch.device('meta'):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG).eval()
        latent = torch.zeros(1, SD15_UNET_CONFIG['in_channels'], side, side)
        text = torch.zeros(1, SD15_TEXT_TOKENS, SD15_UNET_CONFIG['cross_attention_dim'])
        timestep = torch.tensor([500])
    with torch.no_grad():
        _, flops = count_flops(unet, latent, timestep, encoder_hidden_states=text)
    params = parameter_count(unet)
    resolution = f'{size}x{size} (latent {side}x{side}x4, {SD15_TEXT_TOKENS} text tokens)'
    return [
        ReferenceCost('SD-1.5 UNet, 1 step (reference)', resolution, flops, params, 1, {}),
        ReferenceCost(f'SD-1.5 UNet x {steps} steps (latent-diffusion restorer, reference)', resolution,
                      flops * steps, params, steps, PAPER_DIFF_PLUGIN if steps == 20 else {}),
    ]
