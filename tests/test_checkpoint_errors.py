"""Unreadable checkpoints and training states: clear one-line errors, a fallback to the newest intact state, and
nothing deleted."""
import argparse

import pytest
import torch

from helpers.runs import run_cli, tiny_restoration_options, write_options
from restorevar_plugin.checkpoints import CheckpointError, load_state_dict, strict_load


@pytest.fixture
def damaged_files(tmp_path):
    torch.save({'params': {'weight': torch.zeros(2, 2)}}, tmp_path / 'good.pth')
    data = (tmp_path / 'good.pth').read_bytes()
    (tmp_path / 'truncated.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'text.pth').write_text('not a checkpoint\n')
    torch.save(argparse.Namespace(weight=torch.zeros(2)), tmp_path / 'objects.pth')
    return tmp_path


@pytest.mark.parametrize('name, reason', [('truncated.pth', 'empty, truncated or damaged file'),
                                          ('empty.pth', 'empty, truncated or damaged file'),
                                          ('text.pth', 'not a PyTorch checkpoint file'),
                                          ('objects.pth', 'pickled Python objects')])
def test_unreadable_checkpoint_is_called_corrupt_never_unsafe(damaged_files, name, reason):
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(damaged_files / name)
    message = str(caught.value)
    assert message.startswith(f'checkpoint {damaged_files / name} is corrupt or not a checkpoint (')
    assert reason in message and 'weights_only' not in message and '\n' not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_wrong_architecture_names_the_file_and_first_keys(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 3, 3))
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 3, 3))
    with pytest.raises(CheckpointError) as caught:
        strict_load(net, other.state_dict(), tmp_path / 'other.pth')
    message = str(caught.value)
    assert message.startswith(f'checkpoint {tmp_path / "other.pth"} does not fit Sequential: ')
    assert '2 keys missing from the file (first: 1.bias, 1.weight)' in message
    assert '2 keys the model does not have (first: 2.bias, 2.weight)' in message

    wider = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 3, 3))
    with pytest.raises(CheckpointError, match=r'does not fit Sequential: 3 of another shape \(first: 0.weight '
                       r'\(16, 3, 3, 3\) in the file, \(8, 3, 3, 3\) in the model, 0.bias \(16,\) in the file'):
        strict_load(net, wider.state_dict(), tmp_path / 'wider.pth')


def test_wrong_architecture_checkpoint_is_a_one_line_cli_error(tmp_path, toy_root):
    options = tiny_restoration_options('wrong_arch')
    other = dict(options['network_g'], num_feat=16)
    from basicsr.archs import build_network
    checkpoint = toy_root / 'other.pth'
    torch.save({'params': build_network(dict(other)).state_dict()}, checkpoint)
    options['datasets'] = {'test_1': options['datasets']['val']}
    options['path'] = {'pretrain_network_g': str(checkpoint)}
    del options['train']
    result = run_cli(['test', '-opt', str(write_options(tmp_path / 'wrong.yml', options))], cwd=toy_root)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f'basicsr test: error: checkpoint {checkpoint} does not fit RRDBNet: ')
    assert 'conv_first.weight (16, 48, 3, 3) in the file, (8, 48, 3, 3) in the model' in error


def test_auto_resume_skips_a_truncated_latest_state(tmp_path, toy_root):
    option_file = write_options(tmp_path / 'toy.yml', tiny_restoration_options('truncated', total_iter=4))
    assert run_cli(['train', '-opt', str(option_file)], cwd=toy_root).returncode == 0
    states = toy_root / 'experiments' / 'truncated' / 'training_states'
    latest = states / '4.state'
    truncated = latest.read_bytes()[:100]
    latest.write_bytes(truncated)
    result = run_cli(['train', '-opt', str(option_file), '--auto_resume', '--force_yml', 'train:total_iter=3'],
                     cwd=toy_root)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert (f'--auto_resume: skipping training state {latest} is corrupt or not a training state (empty, truncated '
            'or damaged file); trying an older state (nothing is deleted).') in log
    assert 'Resuming training from epoch: 0, iter: 2.' in log
    assert latest.read_bytes() == truncated and (states / '2.state').is_file()
    assert (toy_root / 'experiments' / 'truncated' / 'models' / 'net_g_latest.pth').is_file()
    assert not list((toy_root / 'experiments').glob('truncated_archived_*'))

    (states / '2.state').write_bytes(b'')
    result = run_cli(['train', '-opt', str(option_file), '--auto_resume'], cwd=toy_root)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f'basicsr train: error: --auto_resume: no readable training state in {states} (skipped {latest}, ')
    assert sorted(path.name for path in states.iterdir()) == ['2.state', '4.state']
