"""Shared helpers for tests that run the pipeline: image folders, option files, the CLI and torchrun."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from basicsr.utils.options import ordered_yaml
from skimage import data as skdata

REPO = Path(__file__).resolve().parents[2]


def load_option_file(path):
    """An option file read with BasicSR's own YAML loader."""
    with open(path, encoding='utf-8') as handle:
        return yaml.load(handle, Loader=ordered_yaml()[0])


def write_paired_folders(root, count=6, size=48, seed=0):
    """Write ``count`` GT/LQ PNG pairs (crops of scikit-image's astronaut, LQ = GT + noise) under ``root``.

    Returns:
        tuple[Path, Path]: The ``gt`` and ``lq`` folders.
    """
    rng = np.random.default_rng(seed)
    image = skdata.astronaut()
    gt_dir, lq_dir = Path(root) / 'gt', Path(root) / 'lq'
    gt_dir.mkdir(parents=True, exist_ok=True)
    lq_dir.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        top, left = rng.integers(0, image.shape[0] - size, size=2)
        gt = image[top:top + size, left:left + size]
        lq = np.clip(gt.astype(np.float32) + rng.normal(0, 20, gt.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(gt_dir / f'{index:04d}.png'), cv2.cvtColor(gt, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(lq_dir / f'{index:04d}.png'), cv2.cvtColor(lq, cv2.COLOR_RGB2BGR))
    return gt_dir, lq_dir


def tiny_restoration_options(name, dataroot='data', total_iter=4, save_every=2, **train_overrides):
    """A BasicSR option dict: ``RestorationModel`` training a tiny ``RRDBNet`` on folders under ``dataroot``."""
    train = {
        'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.01, 'betas': [0.9, 0.99]},
        'scheduler': {'type': 'LinearWarmupCosineLR', 'warmup_iter': 2, 'max_iter': 100},
        'total_iter': total_iter,
        'grad_clip': 1.0,
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
    }
    train.update(train_overrides)
    dataset = {
        'type': 'PairedImageDataset',
        'dataroot_gt': f'{dataroot}/gt',
        'dataroot_lq': f'{dataroot}/lq',
        'io_backend': {'type': 'disk'},
        'filename_tmpl': '{}',
    }
    return {
        'name': name,
        'model_type': 'RestorationModel',
        'scale': 1,
        'num_gpu': 'auto',
        'manual_seed': 0,
        'datasets': {
            'train': dict(dataset, name='toy_train', gt_size=32, use_hflip=True, use_rot=False,
                          num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=4),
            'val': dict(dataset, name='toy_val'),
        },
        'network_g': {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'scale': 1, 'num_feat': 8,
                      'num_block': 1, 'num_grow_ch': 4},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': train,
        'val': {'val_freq': save_every, 'save_img': True,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': save_every, 'use_tb_logger': False},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }


def write_options(path, options):
    """Write an option dict as YAML and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    return path


def run_cli(args, cwd, timeout=600, env=None):
    """Run ``python -m restorevar_plugin.cli ARGS`` in ``cwd``; return the CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    return subprocess.run([sys.executable, '-m', 'restorevar_plugin.cli', *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


TORCHRUN_WRAPPER = '''"""Runs the CLI under torchrun, then saves this rank's networks (test instrumentation only)."""
import os
import sys

import restorevar_plugin.cli  # first: applies the basicsr import shim
import basicsr.train
import torch

built = []
original_build_model = basicsr.train.build_model


def build_and_keep(opt):
    built.append(original_build_model(opt))
    return built[-1]


basicsr.train.build_model = build_and_keep
code = restorevar_plugin.cli.main(sys.argv[1:])
for model in built:
    networks = {name: model.get_bare_model(value).state_dict() for name, value in vars(model).items()
                if name.startswith('net_') and isinstance(value, torch.nn.Module)}
    torch.save(networks, os.path.join(os.environ['WEIGHTS_DIR'], f'rank{os.environ["RANK"]}.pth'))
sys.exit(code)
'''


def run_torchrun(cli_args, cwd, scratch, port=29531):
    """``torchrun --nproc_per_node 2`` of the CLI on CPU; returns the CompletedProcess and each rank's networks.

    Returns:
        tuple: ``(result, [rank0, rank1])`` where each rank entry maps ``net_*`` attribute names to state dicts.
    """
    wrapper = Path(scratch) / 'torchrun_wrapper.py'
    wrapper.write_text(TORCHRUN_WRAPPER)
    env = dict(os.environ, WEIGHTS_DIR=str(scratch), OMP_NUM_THREADS='1')
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', str(port),
               str(wrapper), *cli_args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    ranks = [torch.load(Path(scratch) / f'rank{rank}.pth', weights_only=True) for rank in (0, 1)
             if (Path(scratch) / f'rank{rank}.pth').is_file()]
    return result, ranks
