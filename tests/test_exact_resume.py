"""A run killed (SIGKILL) between two training states and resumed with ``--auto_resume`` ends with the weights of an
uninterrupted run: every RestoreVAR stage and ``RestorationModel``, on CPU, to 1e-6."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.runs import (
    REPO,
    tiny_restoration_options,
    write_options,
    write_paired_folders,
)

DEMO = REPO / 'options' / 'demo'
# Kill the process right after the optimisation step of $KILL_AFTER_ITER, i.e. after the state of the previous
# save and before the next one (test instrumentation only).
KILL_WRAPPER = '''import os
import signal
import sys

import restorevar_plugin.cli
import basicsr.train

original_build_model = basicsr.train.build_model


def build_killable(opt):
    model = original_build_model(opt)
    step = model.optimize_parameters

    def optimize_then_maybe_die(current_iter):
        step(current_iter)
        if current_iter == int(os.environ.get('KILL_AFTER_ITER', -1)):
            os.kill(os.getpid(), signal.SIGKILL)

    model.optimize_parameters = optimize_then_maybe_die
    return model


basicsr.train.build_model = build_killable
sys.exit(restorevar_plugin.cli.main(sys.argv[1:]))
'''
# 35 synthetic train items, batch 8: 4 batches per epoch. States at 3 and 6; the kill after iteration 4 resumes
# from iteration 3, mid-epoch 0, and the run crosses into epoch 1.
TINY_DEMO = ['datasets:train:size=32', 'datasets:val:size=32', 'datasets:train:batch_size_per_gpu=8',
             'datasets:train:dataset_enlarge_ratio=1', 'network_vqvae:patch_nums=[1,2,4]', 'train:total_iter=6',
             'logger:save_checkpoint_freq=3', 'logger:print_freq=1', 'val:val_freq=3', 'train:ema_decay=0.9']
TINY_TRANSFORMER = ['network_g:patch_nums=[1,2,4]']
STAGES = {
    'tokenizer': ('restorevar_tokenizer.yml', ['train:dead_code_restart:interval=2']),
    'transformer': ('restorevar_stage1.yml', TINY_TRANSFORMER + ['path:pretrain_network_vqvae=~']),
    'decoder_gan': ('restorevar_stage2.yml', ['path:pretrain_network_vqvae=~', 'train:net_d_init_iters=1']),
    'refiner': ('restorevar_stage3.yml', TINY_TRANSFORMER + [
        'path:pretrain_network_vqvae=~', 'path:pretrain_network_g=~', 'network_refiner:seq_len=16',
        'network_refiner:seq_len_cond=21']),
}


def run(cli_args, cwd, scratch, kill_after=None):
    """Run the CLI through the kill wrapper; ``kill_after`` SIGKILLs the process after that iteration's step."""
    wrapper = Path(scratch) / 'kill_wrapper.py'
    wrapper.write_text(KILL_WRAPPER)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env.pop('KILL_AFTER_ITER', None)
    if kill_after is not None:
        env['KILL_AFTER_ITER'] = str(kill_after)
    return subprocess.run([sys.executable, str(wrapper), *cli_args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def assert_same_weights(expected_dir, actual_dir):
    names = sorted(path.name for path in expected_dir.glob('*.pth'))
    assert names == sorted(path.name for path in actual_dir.glob('*.pth')) and names
    for name in names:
        expected = torch.load(expected_dir / name, weights_only=True)
        actual = torch.load(actual_dir / name, weights_only=True)
        assert sorted(expected) == sorted(actual), name
        for param_key, state in expected.items():
            for key, value in state.items():
                torch.testing.assert_close(actual[param_key][key], value, atol=1e-6, rtol=0,
                                           msg=f'{name} {param_key} {key}')


def check_kill_and_resume(train_args, experiment, tmp_path, prepare_root=None):
    roots = {label: tmp_path / label for label in ('uninterrupted', 'interrupted')}
    for root in roots.values():
        root.mkdir()
        if prepare_root is not None:
            prepare_root(root)
    reference = run(train_args, roots['uninterrupted'], tmp_path)
    assert reference.returncode == 0, reference.stderr[-4000:]

    killed = run(train_args, roots['interrupted'], tmp_path, kill_after=4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    states = roots['interrupted'] / 'experiments' / experiment / 'training_states'
    assert sorted(path.name for path in states.glob('*.state')) == ['3.state']
    resumed = run([*train_args, '--auto_resume'], roots['interrupted'], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert 'Resuming training from epoch: 0, iter: 3.' in resumed.stdout + resumed.stderr
    assert_same_weights(roots['uninterrupted'] / 'experiments' / experiment / 'models',
                        roots['interrupted'] / 'experiments' / experiment / 'models')


@pytest.mark.parametrize('stage', sorted(STAGES))
def test_restorevar_stage_resumes_exactly(tmp_path, stage):
    option_file, overrides = STAGES[stage]
    args = ['train', '-opt', str(DEMO / option_file), '--force_yml', *TINY_DEMO, *overrides]
    experiment = f'demo_{option_file.removesuffix(".yml")}'
    check_kill_and_resume(args, experiment, tmp_path)


def test_restoration_model_resumes_exactly(tmp_path):
    # 6 pairs, batch 1: 6 batches per epoch, resumed mid-epoch; BasicSR's PairedImageDataset crops and flips with
    # Python's `random`.
    options = tiny_restoration_options('resume_rm', total_iter=6, save_every=3, ema_decay=0.9)
    options['datasets']['train']['dataset_enlarge_ratio'] = 1
    options['datasets']['train']['batch_size_per_gpu'] = 1
    option_file = write_options(tmp_path / 'resume_rm.yml', options)
    check_kill_and_resume(['train', '-opt', str(option_file)], 'resume_rm', tmp_path,
                          prepare_root=lambda root: write_paired_folders(root / 'data'))
