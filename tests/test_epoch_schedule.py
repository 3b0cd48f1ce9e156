"""Epoch-counted options: converted to BasicSR's iteration keys from the built train set, end to end on CPU."""
import copy
import json

import pytest
from basicsr.data import build_dataset

from helpers.dataset_trees import build_meta_tree
from helpers.runs import (
    REPO,
    load_option_file,
    run_cli,
    tiny_restoration_options,
    write_options,
)
from restorevar_plugin.data.meta import DatasetLayoutError, load_dataset_meta
from restorevar_plugin.epoch_schedule import (
    EpochOptionError,
    apply_epoch_schedule,
    check_epoch_options,
    iterations_per_epoch,
)

FOLDER_METAS = ['restorevar_reside_train', 'restorevar_snow100k_train', 'restorevar_rain13k_train',
                'restorevar_lolv1_train', 'restorevar_gopro_train']


def epoch_options(**train):
    """Stage-1-like options counted in epochs: global batch 24 x 2 processes."""
    return {'name': 'epochs', 'world_size': 2,
            'datasets': {'train': {'batch_size_per_gpu': 24, 'dataset_enlarge_ratio': 1}},
            'train': {'total_epochs': 50, 'scheduler': {'type': 'ConstantLinearDecayLR', 'warmup_epochs': 1}, **train},
            'val': {'val_freq_epochs': 1}, 'logger': {'save_checkpoint_freq_epochs': 1}}


def test_official_arithmetic_50_epochs_of_ceil_n_over_48():
    assert iterations_per_epoch(138435, 1, 24, 2) == 2885 and iterations_per_epoch(48, 1, 24, 2) == 1
    opt = epoch_options()
    check_epoch_options(opt)
    lines = apply_epoch_schedule(opt, 138435)
    assert opt['train']['total_iter'] == 144250 == opt['train']['scheduler']['total_iter']
    assert opt['train']['scheduler']['warmup_iter'] == opt['val']['val_freq'] == 2885
    assert opt['logger']['save_checkpoint_freq'] == 2885
    assert not any(key.endswith('_epochs') for section in (opt['train'], opt['train']['scheduler'], opt['val'],
                                                          opt['logger']) for key in section)
    assert '138435 items' in lines[0] and '2885 iterations per epoch' in lines[0]
    assert '\ttrain.total_epochs: 50 -> train.total_iter: 144250' in lines


def test_fractional_epochs_enlarge_ratio_and_cosine_schedule():
    opt = epoch_options(scheduler={'type': 'LinearWarmupCosineLR', 'warmup_epochs': 0.5})
    opt['datasets']['train'].update(dataset_enlarge_ratio=3, batch_size_per_gpu=4)
    opt['world_size'] = 1
    apply_epoch_schedule(opt, 10)  # ceil(10 * 3 / 4) = 8 iterations per epoch
    assert (opt['train']['total_iter'], opt['train']['scheduler']['max_iter']) == (400, 400)
    assert opt['train']['scheduler']['warmup_iter'] == 4


def test_debug_mode_keeps_basicsr_debug_frequencies():
    opt = epoch_options()
    opt['name'] = 'debug_epochs'
    opt['val']['val_freq'], opt['logger']['save_checkpoint_freq'] = 8, 8  # what BasicSR's parser sets
    check_epoch_options(opt)
    apply_epoch_schedule(opt, 480)
    assert (opt['val']['val_freq'], opt['logger']['save_checkpoint_freq'], opt['train']['total_iter']) == (8, 8, 500)


@pytest.mark.parametrize('change, message', [
    (lambda o: o['train'].update(total_iter=10), 'train: give either total_epochs or total_iter, not both'),
    (lambda o: o['train']['scheduler'].update(warmup_iter=3), 'give either warmup_epochs or warmup_iter'),
    (lambda o: o['val'].update(val_freq=3), 'val: give either val_freq_epochs or val_freq'),
    (lambda o: o['train'].update(total_epochs=2.5), 'total_epochs must be a positive integer; got 2.5'),
    (lambda o: o['train'].update(total_epochs=0), 'total_epochs must be a positive integer; got 0'),
    (lambda o: o['val'].update(val_freq_epochs=-1), 'val.val_freq_epochs must be a non-negative number'),
    (lambda o: o['train']['scheduler'].update(total_iter=5), 'scheduler.total_iter is set with train.total_epochs'),
    (lambda o: o['datasets'].pop('train'), 'epochs need a datasets.train entry'),
])
def test_bad_epoch_options_are_named(change, message):
    opt = epoch_options()
    change(opt)
    with pytest.raises(EpochOptionError, match=message):
        check_epoch_options(opt)


def test_options_without_epoch_keys_are_untouched():
    opt = tiny_restoration_options('plain')
    before = copy.deepcopy(opt)
    check_epoch_options(opt)
    assert apply_epoch_schedule(opt, 100) == [] and opt == before


def stage_train_set(stage_file, data_root):
    opt = load_option_file(REPO / 'options' / stage_file)
    return opt, build_dataset(dict(opt['datasets']['train'], phase='train', data_root=str(data_root)))


@pytest.mark.parametrize('stage_file', ['restorevar_stage1.yml', 'restorevar_stage3.yml'])
def test_stages_train_on_trainset_json_when_present_else_on_the_folders(stage_file, tmp_path):
    folder_pairs = set()
    for name in FOLDER_METAS:
        folder_pairs |= build_meta_tree(load_dataset_meta(name), str(tmp_path))
    opt, dataset = stage_train_set(stage_file, tmp_path)
    assert [meta.name for meta in dataset.metas] == FOLDER_METAS
    assert {(p.lq_path, p.gt_path, p.degradation, p.dataset) for p in dataset.pairs} == folder_pairs
    opt.update(world_size=2)
    apply_epoch_schedule(opt, len(dataset))  # 9 pairs: ceil(9 / 48) = 1 iteration per epoch
    assert opt['train']['total_iter'] == 50 == opt['train']['scheduler']['total_iter']
    assert opt['train']['scheduler']['warmup_iter'] == opt['val']['val_freq'] == 1

    listed = build_meta_tree(load_dataset_meta('restorevar_trainset'), str(tmp_path))
    opt, dataset = stage_train_set(stage_file, tmp_path)
    assert [meta.name for meta in dataset.metas] == ['restorevar_trainset']
    assert {(p.lq_path, p.gt_path, p.degradation, p.dataset) for p in dataset.pairs} == listed
    assert len(dataset) == 4


def test_broken_list_does_not_fall_back_and_missing_everything_raises(tmp_path):
    for name in FOLDER_METAS:
        build_meta_tree(load_dataset_meta(name), str(tmp_path))
    (tmp_path / 'trainset.json').write_text(json.dumps([{'image_path': 'nowhere.png', 'target_path': 'x.png',
                                                        'degradation': 'Haze', 'dataset': 'RESIDE'}]))
    with pytest.raises(ValueError, match='missing LQ: .*nowhere.png'):
        stage_train_set('restorevar_stage1.yml', tmp_path)
    empty = tmp_path / 'empty_root'
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match='data/Haze/RESIDE/Train'):
        stage_train_set('restorevar_stage1.yml', empty)


def test_basicsr_train_counts_epochs_of_a_tiny_list(tmp_path, toy_root):
    entries = [{'lq_path': f'data/lq/{index:04d}.png', 'gt_path': f'data/gt/{index:04d}.png'} for index in range(5)]
    (toy_root / 'list.json').write_text(json.dumps(entries))
    options = tiny_restoration_options('epochs')
    options['datasets']['train'] = {
        'name': 'listed', 'type': 'MultiDegradationPairedDataset', 'data_root': '.', 'balance': 'none',
        'meta': {'name': 'toy_list', 'dataset': 'Toy', 'degradation': 'rain', 'split': 'train', 'root': '.',
                 'source': 'tests', 'pairing': {'rule': 'list_file', 'list_file': 'list.json'}},
        'transform': {'type': 'restorevar', 'crop_size': 32}, 'batch_size_per_gpu': 2, 'num_worker_per_gpu': 0}
    del options['train']['total_iter'], options['val']['val_freq'], options['logger']['save_checkpoint_freq']
    options['train'].update(total_epochs=2, scheduler={'type': 'LinearWarmupCosineLR', 'warmup_epochs': 1})
    options['val']['val_freq_epochs'] = 2
    options['logger']['save_checkpoint_freq_epochs'] = 1
    result = run_cli(['train', '-opt', str(write_options(tmp_path / 'epochs.yml', options))], cwd=toy_root)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    # 5 listed pairs, batch 2: ceil(5 / 2) = 3 iterations per epoch
    assert '5 items x enlarge ratio 1 / (batch 2 per GPU x 1 processes) -> 3 iterations per epoch' in log
    assert 'train.total_epochs: 2 -> train.total_iter: 6' in log and 'Total epochs: 2; iters: 6.' in log
    models = toy_root / 'experiments' / 'epochs' / 'models'
    assert sorted(path.name for path in models.glob('net_g_*.pth')) == ['net_g_3.pth', 'net_g_6.pth',
                                                                         'net_g_latest.pth']

    options['train']['total_iter'] = 6
    result = run_cli(['train', '-opt', str(write_options(tmp_path / 'both.yml', dict(options, name='both')))],
                     cwd=toy_root)
    assert result.returncode == 2 and 'give either total_epochs or total_iter' in result.stderr
    assert not (toy_root / 'experiments' / 'both').exists()
