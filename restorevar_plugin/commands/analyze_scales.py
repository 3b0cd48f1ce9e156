"""``basicsr analyze-scales``: the paper's scale-space analysis (Fig. 2) on the datasets of an option file.

    basicsr analyze-scales -opt options/demo/analyze_scales.yml [--root DIR] [--coarse-scales K] [--device cpu]

Option file (BasicSR schema, so test YAMLs can be reused)::

    name: scale_analysis_demo
    network_vqvae: {type: MultiScaleVQVAE, ...}
    path: {pretrain_network_vqvae: pretrained/vae_ch160v4096z32.pth}   # any checkpoint layout
    datasets:
      test_1: {name: ..., type: MultiDegradationPairedDataset, ...}      # every entry, built with phase: test
    analysis: {coarse_scales: 5, max_images: 50, batch_size: 1}

``analysis`` (all optional): ``coarse_scales`` k (default: half of the scales, rounded down; ``--coarse-scales``
overrides), ``max_images`` per dataset (default: all; fewer are spread evenly over the dataset),
``batch_size`` (default 1). Items not at the VQVAE resolution are Lanczos-resized to it (degraded and GT alike,
aspect ratio not kept); a dataset transform such as ``paper_512`` can do that instead.

For each dataset entry it writes, whole (built in a temporary folder, then renamed over the previous one),
``<root>/results/<name>/scale_analysis/<dataset name>/``:

* ``<index>_<image>.png``: ``Degraded | GT_coarse | GT_fine | GT`` side by side, all decoded from indices
  (see :mod:`restorevar_plugin.scale_analysis`);
* ``psnr.csv``: PSNR (dB) to the GT image per image and variant, plus ``input`` (the raw degraded image),
  then mean rows per degradation (when the dataset names them) and over all images;
* ``summary.md``: the mean rows as a markdown table, also printed.

Exit code 0 on success, 2 for a bad option file, a missing checkpoint or a dataset without GT images.
"""
import csv
import os
import shutil
import sys
import tempfile
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
import yaml
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.utils import imwrite, tensor2img

from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE
from restorevar_plugin.checkpoints import load_network
from restorevar_plugin.harness import check_option_schema, resolve_option_paths
from restorevar_plugin.scale_analysis import (
    PANEL_TITLES,
    PSNR_COLUMNS,
    VARIANTS,
    check_coarse_scales,
    mean_rows,
    resize_to_resolution,
    scale_swap_analysis,
    summary_markdown,
)

NAME = 'analyze-scales'
HELP = 'scale-space analysis (paper Fig. 2): swap coarse/fine token scales between degraded and GT images'
ANALYSIS_KEYS = ('coarse_scales', 'max_images', 'batch_size')


def add_arguments(parser):
    """Options of ``basicsr analyze-scales``."""
    parser.add_argument('-opt', required=True, help='option YAML with network_vqvae, path.pretrain_network_vqvae, '
                        'datasets and an optional analysis section')
    parser.add_argument('--root', default=None, help='root for results/ and relative paths in the option file '
                        '(default: the current directory)')
    parser.add_argument('--coarse-scales', type=int, default=None, metavar='K',
                        help='number of leading scales counted as coarse (overrides analysis.coarse_scales)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                        help='default: cuda when available, else cpu')


def _positive_int(analysis_opt, key, default):
    value = analysis_opt.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f'analysis.{key} must be a positive integer; got {value!r}')
    return value


def load_options(option_file, root):
    """Read and check the option file; relative paths resolved against ``root``.

    Raises:
        ValueError: Missing ``name``, ``network_vqvae``, ``path.pretrain_network_vqvae`` or ``datasets``; unknown
            ``analysis`` keys; two dataset entries with the same name.
        UnknownRegistryNameError: A ``type`` no registry holds.
    """
    with open(option_file, encoding='utf-8') as handle:
        opt = yaml.safe_load(handle)
    if not isinstance(opt, dict):
        raise ValueError(f'{option_file}: expected a mapping of options')
    for key in ('name', 'network_vqvae', 'datasets'):
        if not opt.get(key):
            raise ValueError(f'{option_file}: option {key!r} is required')
    if not (opt.get('path') or {}).get('pretrain_network_vqvae'):
        raise ValueError(f'{option_file}: path.pretrain_network_vqvae (the VQVAE checkpoint) is required')
    unknown = sorted(set(opt.get('analysis') or {}) - set(ANALYSIS_KEYS))
    if unknown:
        raise ValueError(f'{option_file}: unknown analysis option(s) {", ".join(unknown)}; options: '
                         f'{", ".join(ANALYSIS_KEYS)}')
    names = [dataset_opt.get('name', key) for key, dataset_opt in opt['datasets'].items()]
    if len(set(names)) != len(names):
        raise ValueError(f'{option_file}: dataset names must differ (each names an output folder); got {names}')
    resolve_option_paths(opt, root)
    check_option_schema(opt)
    return opt


def load_vqvae(opt, device):
    """Build ``network_vqvae`` (a :class:`MultiScaleVQVAE`), load ``path.pretrain_network_vqvae`` strictly, eval."""
    vqvae = build_network(deepcopy(opt['network_vqvae']))
    if not isinstance(vqvae, MultiScaleVQVAE):
        raise ValueError(f'network_vqvae.type must be MultiScaleVQVAE (or a subclass); got {type(vqvae).__name__}')
    load_network(vqvae, opt['path']['pretrain_network_vqvae'], strict=True)
    return vqvae.eval().to(device)


def select_indices(length, max_images):
    """``max_images`` dataset indices spread evenly over ``range(length)`` (all of them without a limit)."""
    if max_images is None or max_images >= length:
        return list(range(length))
    return sorted({int(i) for i in np.linspace(0, length - 1, max_images).round()})


def _batches(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def analyze_dataset(vqvae, dataset, where, coarse_scales, max_images, batch_size, out_dir, device):
    """Run the analysis on a dataset, writing grids into ``out_dir``; return the per-image PSNR rows.

    Args:
        vqvae (MultiScaleVQVAE): The tokenizer, in eval mode on ``device``.
        dataset (Dataset): Items with ``lq``/``gt`` ``(3, H, W)`` in [0, 1], ``lq_path`` and optionally
            ``degradation``.
        where (str): The dataset entry, for error messages.
        coarse_scales (int): k.
        max_images (int | None): Limit, see :func:`select_indices`.
        batch_size (int): Pairs per VQVAE call.
        out_dir (Path): Existing folder receiving ``<index>_<image>.png``.
        device (torch.device): Where the VQVAE runs.

    Returns:
        tuple[list[dict], list[str]]: Rows ``{'image', 'degradation', <PSNR columns>}`` and notes (resizing).

    Raises:
        ValueError: An empty dataset, or an item without a GT image.
    """
    if not len(dataset):
        raise ValueError(f'{where}: the dataset is empty')
    size = vqvae.image_size
    rows, resized = [], set()
    for chunk in _batches(select_indices(len(dataset), max_images), batch_size):
        items = [dataset[index] for index in chunk]
        for index, item in zip(chunk, items):
            if 'gt' not in item:
                raise ValueError(f'{where}: item {index} ({item.get("lq_path")}) has no GT image; the scale analysis '
                                 'needs paired data')
            resized.update(tuple(item[key].shape[-2:]) for key in ('lq', 'gt') if item[key].shape[-2:] != (size, size))
        degraded = torch.stack([resize_to_resolution(item['lq'], size) for item in items]).to(device)
        gt = torch.stack([resize_to_resolution(item['gt'], size) for item in items]).to(device)
        result = scale_swap_analysis(vqvae, degraded, gt, coarse_scales)
        for position, (index, item) in enumerate(zip(chunk, items)):
            stem = f'{index:05d}_{Path(item["lq_path"]).stem}'
            imwrite(tensor2img(result.grid(position).cpu()), str(out_dir / f'{stem}.png'))
            rows.append({'image': stem, 'degradation': item.get('degradation', ''),
                         **{column: result.psnr[column][position] for column in PSNR_COLUMNS}})
    notes = [f'Lanczos-resized {height}x{width} images to {size}x{size}' for height, width in sorted(resized)]
    return rows, notes


def write_csv(path, rows, means):
    """Per-image rows, then the mean rows (``image = 'mean'``), PSNRs with 6 decimals."""
    with open(path, 'w', newline='', encoding='utf-8') as handle:
        writer = csv.writer(handle)
        writer.writerow(['image', 'degradation', *PSNR_COLUMNS])
        for row in rows:
            writer.writerow([row['image'], row['degradation'], *(f'{row[c]:.6f}' for c in PSNR_COLUMNS)])
        for row in means:
            writer.writerow(['mean', row['degradation'], *(f'{row[c]:.6f}' for c in PSNR_COLUMNS)])


def replace_folder(source, target):
    """Move the finished folder ``source`` to ``target``, replacing a previous ``target`` whole."""
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f'.{target.name}.old.'))
        os.replace(target, old / target.name)
        os.replace(source, target)
        shutil.rmtree(old)
    else:
        os.replace(source, target)


def _device(choice):
    if choice == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is available')
    return torch.device(choice or ('cuda' if torch.cuda.is_available() else 'cpu'))


def _header(dataset_name, vqvae, coarse_scales, count):
    patch_nums = vqvae.patch_nums
    coarse = ', '.join(map(str, patch_nums[:coarse_scales]))
    fine = ', '.join(map(str, patch_nums[coarse_scales:]))
    size = vqvae.image_size
    columns = ' | '.join(PANEL_TITLES[variant] for variant in VARIANTS)
    return (f'## {dataset_name}: {count} image(s) at {size}x{size}, coarse scales [{coarse}] | fine scales [{fine}] '
            f'(k={coarse_scales})\n\nPSNR (dB) to the GT image; input = the degraded image itself, the others are '
            f'decoded from tokens ({columns}).\n')


def run(args):
    """Analyse every dataset entry of ``-opt``; exit code 0, or 2 on a bad option, file or dataset."""
    root = Path(args.root or os.getcwd()).resolve()
    try:
        opt = load_options(args.opt, root)
        device = _device(args.device)
        vqvae = load_vqvae(opt, device)
        analysis_opt = opt.get('analysis') or {}
        coarse_option = '--coarse-scales' if args.coarse_scales is not None else 'analysis.coarse_scales'
        coarse_scales = check_coarse_scales(
            args.coarse_scales if args.coarse_scales is not None else analysis_opt.get('coarse_scales'),
            vqvae.patch_nums, coarse_option)
        max_images = _positive_int(analysis_opt, 'max_images', None)
        batch_size = _positive_int(analysis_opt, 'batch_size', 1)
        out_root = root / 'results' / opt['name'] / 'scale_analysis'
        out_root.mkdir(parents=True, exist_ok=True)
        for key, dataset_opt in opt['datasets'].items():
            dataset_opt = dict(dataset_opt, name=dataset_opt.get('name', key), phase='test')
            where = f'datasets.{key} ({dataset_opt["name"]})'
            dataset = build_dataset(dataset_opt)
            work = Path(tempfile.mkdtemp(dir=out_root, prefix=f'.{dataset_opt["name"]}.tmp.'))
            try:
                rows, notes = analyze_dataset(vqvae, dataset, where, coarse_scales, max_images, batch_size, work,
                                              device)
                means = mean_rows(rows)
                report = _header(dataset_opt['name'], vqvae, coarse_scales, len(rows)) + '\n' + summary_markdown(means)
                write_csv(work / 'psnr.csv', rows, means)
                (work / 'summary.md').write_text(report + '\n', encoding='utf-8')
                target = out_root / dataset_opt['name']
                replace_folder(work, target)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print('\n'.join([report, *notes, f'written to {target}', '']), flush=True)
    except (ValueError, OSError, yaml.YAMLError) as error:
        print(f'basicsr {NAME}: error: {error}', file=sys.stderr)
        return 2
    return 0
