"""``path:`` options are never turned into folders: the shipped test option file runs with its weights present and
stops with a clear error, creating nothing, when they are absent."""
import copy

import pytest
import torch
import yaml
from basicsr.archs import build_network

from helpers.runs import REPO, run_cli, write_options

TINY_NETWORKS = {
    'network_vqvae': {'type': 'MultiScaleVQVAE', 'vocab_size': 64, 'z_channels': 8, 'ch': 32, 'ch_mult': [1, 1, 2, 2],
                      'num_res_blocks': 1, 'patch_nums': [1, 2, 4]},
    'network_g': {'type': 'RestoreVARTransformer', 'depth': 1, 'embed_dim': 32, 'num_heads': 2, 'vocab_size': 64,
                  'z_channels': 8, 'patch_nums': [1, 2, 4]},
    'network_refiner': {'type': 'LatentRefinerTransformer', 'seq_len': 16, 'seq_len_cond': 21, 'in_dim': 8,
                        'in_dim_cond': 32, 'out_dim': 8, 'dim': 16, 'depth': 1, 'heads': 2, 'mlp_dim': 32},
}


def shipped_test_options_tiny():
    """``options/restorevar_test.yml`` with tiny networks and a synthetic test set; its ``path:`` block unchanged."""
    with open(REPO / 'options' / 'restorevar_test.yml', encoding='utf-8') as handle:
        options = yaml.safe_load(handle)
    options.update(copy.deepcopy(TINY_NETWORKS), num_gpu=0)
    options['datasets'] = {'test_1': {'name': 'synthetic_test', 'type': 'SyntheticDegradationDataset', 'size': 32,
                                      'seed': 0, 'split': 'val'}}
    options['val']['metrics'] = {'lpips': None}  # the paper protocol without LPIPS (its AlexNet file is not here)
    options['val']['pbar'] = False
    return options


def plant_official_files(root):
    """Random-init ``pretrained/vae_restorevar.ckpt`` and ``pretrained/restorevar.pth`` in the official flat layouts."""
    torch.manual_seed(0)
    folder = root / 'pretrained'
    folder.mkdir(parents=True)
    torch.save(build_network(dict(TINY_NETWORKS['network_vqvae'])).state_dict(), folder / 'vae_restorevar.ckpt')
    transformer = build_network(dict(TINY_NETWORKS['network_g'])).state_dict()
    refiner = build_network(dict(TINY_NETWORKS['network_refiner'])).state_dict()
    torch.save({**transformer, **{f'vae_refiner.{key}': value for key, value in refiner.items()}},
               folder / 'restorevar.pth')


@pytest.fixture
def test_option_file(tmp_path):
    options = shipped_test_options_tiny()
    assert options['path'] == {'pretrain_network_vqvae': 'pretrained/vae_restorevar.ckpt',
                               'pretrain_restorevar': 'pretrained/restorevar.pth', 'pretrain_decoder': None}
    return write_options(tmp_path / 'opts' / 'restorevar_test.yml', options)


def test_shipped_test_layout_runs_with_the_weights_present(tmp_path, test_option_file):
    root = tmp_path / 'root'
    plant_official_files(root)
    result = run_cli(['test', '-opt', str(test_option_file)], cwd=root)
    assert result.returncode == 0, result.stderr[-4000:]
    results = root / 'results' / 'restorevar_test_paper_512'
    assert (results / 'synthetic_test_metrics.csv').is_file()
    assert all((root / 'pretrained' / name).is_file() for name in ('restorevar.pth', 'vae_restorevar.ckpt'))
    assert not (root / 'None').exists()


def test_missing_weights_are_named_and_nothing_is_created(tmp_path, test_option_file):
    root = tmp_path / 'root'
    root.mkdir()
    result = run_cli(['test', '-opt', str(test_option_file)], cwd=root)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('basicsr test: error: path.pretrain_network_vqvae: ')
    assert str(root / 'pretrained' / 'vae_restorevar.ckpt') in error and 'SharePoint' in error
    assert 'Traceback' not in result.stderr
    assert list(root.iterdir()) == []   # no pretrained/restorevar.pth folder, no results/

    (root / 'pretrained').mkdir()
    plant_official_files(tmp_path / 'planted')
    (tmp_path / 'planted' / 'pretrained' / 'vae_restorevar.ckpt').rename(root / 'pretrained' / 'vae_restorevar.ckpt')
    result = run_cli(['test', '-opt', str(test_option_file)], cwd=root)
    assert result.returncode == 2
    assert 'path.pretrain_restorevar: ' in result.stderr
    assert str(root / 'pretrained' / 'restorevar.pth') in result.stderr
    assert sorted(path.name for path in root.rglob('*')) == ['pretrained', 'vae_restorevar.ckpt']
