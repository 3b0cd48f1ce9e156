"""Tiny RestoreVARModel option files (the demo's, at 32 px and 3 scales) and their synthetic data."""
import torch
from basicsr.data import build_dataset
from basicsr.models import build_model

from helpers.runs import REPO, load_option_file

DEMO = REPO / 'options' / 'demo'
SIZE = 32
PATCH_NUMS = [1, 2, 4]


def tiny_options(stage_file, tmp_path):
    """A demo option file shrunk to 32-px images and 3 scales, ready for ``build_model`` (no pretrained files)."""
    opt = load_option_file(DEMO / stage_file)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    for key in ('models', 'training_states', 'visualization'):
        opt['path'][key] = str(tmp_path / key)
    for key in list(opt['path']):
        if key.startswith('pretrain_'):
            opt['path'][key] = None
    for key in ('network_vqvae', 'network_g'):
        if key in opt:
            opt[key]['patch_nums'] = PATCH_NUMS
    if 'network_refiner' in opt:
        opt['network_refiner'].update(seq_len=16, seq_len_cond=21)
    for dataset_opt in opt['datasets'].values():
        dataset_opt['size'] = SIZE
    return opt


def tiny_test_model(tmp_path, **val):
    """A test-mode (``is_train: false``) tiny stage-3 ``RestoreVARModel``, seed 0, with ``val`` options added."""
    opt = tiny_options('restorevar_stage3.yml', tmp_path)
    opt['is_train'] = False
    opt['val'].update(val)
    torch.manual_seed(0)
    return build_model(opt)


def synthetic(opt, phase):
    """The option file's synthetic ``train`` (phase ``train``) or ``val`` dataset, built for ``phase``."""
    key = 'train' if phase == 'train' else 'val'
    return build_dataset(dict(opt['datasets'][key], phase=phase))


def fixed_batch(opt, count=8):
    """The first ``count`` validation items stacked: ``lq`` / ``gt`` ``(count, 3, SIZE, SIZE)`` in [0, 1]."""
    dataset = synthetic(opt, 'val')
    return {key: torch.stack([dataset[i][key] for i in range(count)]) for key in ('lq', 'gt')}
