"""``basicsr check-data``: exit codes and report on good and broken trees, with -meta and with -opt."""
import argparse
import os

import numpy as np
import pytest
import yaml

from helpers.dataset_trees import build_meta_tree, write_image
from restorevar_plugin import cli
from restorevar_plugin.commands import check_data
from restorevar_plugin.data.meta import load_dataset_meta


def run_check(argv, capsys):
    parser = argparse.ArgumentParser()
    check_data.add_arguments(parser)
    code = check_data.run(parser.parse_args(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def good_root(tmp_path):
    root = tmp_path / 'data'
    for name in ('reside_sots_outdoor_test', 'gopro_test', 'lolv1_test'):
        build_meta_tree(load_dataset_meta(name), str(root))
    return root


def test_good_tree_exits_zero_with_a_table(good_root, capsys):
    code, out = run_check(['-meta', 'reside_sots_outdoor_test', 'gopro_test', 'lolv1_test', '--root', str(good_root)],
                          capsys)
    assert code == 0, out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows['gopro_test'][1:6] == ['GoPro', 'blur', 'test', '2', '0']
    assert rows['RESIDE-SOTS-outdoor'][:3] == ['RESIDE-SOTS-outdoor', 'haze', '2']
    assert 'result: every pair is usable' in out
    assert '2 pairs found; the official release has 500' in out  # expected_pairs warning, not an error


def test_broken_tree_exits_one_and_names_every_file(good_root, capsys):
    sots = good_root / 'RESIDE' / 'SOTS' / 'outdoor'
    os.remove(sots / 'gt' / '0002.png')
    (sots / 'hazy' / '0001_0.8_0.2.jpg').write_bytes(b'\xff\xd8 truncated')
    write_image(str(sots / 'gt' / '0007.png'))
    eval15 = good_root / 'LOLdataset' / 'eval15'
    write_image(str(eval15 / 'low' / '5.png'), size=(8, 8))
    write_image(str(eval15 / 'high' / '5.png'), size=(8, 9))
    write_image(str(eval15 / 'low' / '6.png'), np.zeros((8, 8), np.uint16))
    write_image(str(eval15 / 'high' / '6.png'), np.zeros((8, 8, 4), np.uint8))
    code, out = run_check(['-meta', 'reside_sots_outdoor_test', 'lolv1_test', '--root', str(good_root)], capsys)
    assert code == 1
    broken, warnings = out.split('BROKEN:')[1].split('warnings:')[0], out.split('warnings:')[1]
    assert f'{sots}/hazy/0002_0.95_0.16.jpg (looked for {sots}/gt/0002.png' in broken
    assert f'{sots}/hazy/0001_0.8_0.2.jpg: cannot be decoded' in broken
    assert f'{eval15}/low/5.png is 8x8, {eval15}/high/5.png is 8x9' in broken
    assert f'GT files no pair uses: 1\n    {sots}/gt/0007.png' in warnings
    assert '(16-bit -> float): 1' in warnings and '(gray -> 3 channels): 1' in warnings
    assert '(alpha dropped): 1' in warnings and f'{eval15}/low/6.png (1 ch, 16-bit) vs' in warnings
    assert 'result: 3 broken pair(s)/folder(s)' in out


def test_missing_root_is_broken_and_usage_errors_exit_two(tmp_path, capsys):
    code, out = run_check(['-meta', 'lolv1_test', '--root', str(tmp_path / 'nowhere')], capsys)
    assert code == 1 and f'data root {tmp_path / "nowhere"} does not exist' in out
    code, out = run_check(['-meta', 'lolv1_test'], capsys)
    assert code == 2 and 'needs --root' in out
    code, out = run_check(['-meta', 'lolv1_tset', '--root', str(tmp_path)], capsys)
    assert code == 2 and "no dataset meta named 'lolv1_tset'" in out and 'lolv1_test' in out


def test_option_file_entries_are_inspected(good_root, tmp_path, capsys):
    options = {'name': 'x', 'datasets': {
        'train': {'name': 'aio', 'type': 'MultiDegradationPairedDataset', 'data_root': 'data',
                  'meta': ['reside_sots_outdoor_test', 'lolv1_test'], 'degradation_weights': {'haze': 3}},
        'val_1': {'name': 'synthetic', 'type': 'SyntheticDegradationDataset', 'size': 32},
        'val_2': {'name': 'lol', 'type': 'MultiDegradationPairedDataset', 'data_root': 'data', 'meta': 'lolv1_test'},
        'val_3': {'name': 'other', 'type': 'PairedImageDataset', 'dataroot_gt': 'x', 'dataroot_lq': 'y'}}}
    opt_file = tmp_path / 'opt.yml'
    opt_file.write_text(yaml.safe_dump(options))
    code, out = run_check(['-opt', str(opt_file), '--root', str(tmp_path)], capsys)
    assert code == 0, out
    assert f'datasets.train (MultiDegradationPairedDataset)  data_root={good_root}' in out
    assert 'synthetic: 10 items = 2 clean images x 5 degradations' in out
    assert 'datasets.val_3' not in out
    shares = {line.split()[1]: line.split()[3] for line in out.split('== datasets.val_1')[0].splitlines()
              if line.startswith(('RESIDE-SOTS-outdoor', 'LOLv1'))}
    assert shares == {'haze': '75.0%', 'low_light': '25.0%'}
    assert 'used by more than one entry/meta (overlap): 2' in out  # lolv1_test in train and val_2


def test_option_file_with_invalid_entry_exits_two(tmp_path, capsys):
    opt_file = tmp_path / 'opt.yml'
    opt_file.write_text(yaml.safe_dump({'datasets': {'train': {'type': 'MultiDegradationPairedDataset',
                                                               'data_root': '.', 'meta': 'lolv1_test', 'seeed': 1}}}))
    code, out = run_check(['-opt', str(opt_file)], capsys)
    assert code == 2 and 'unknown option(s) seeed' in out


def test_list_and_cli_registration(capsys):
    assert cli.main(['check-data', '--list']) == 0
    out = capsys.readouterr().out
    assert 'restorevar_gopro_train' in out and 'sequence_folders' in out


def test_a_gt_shared_by_several_pairs_is_read_and_reported_once(tmp_path, capsys):
    meta = load_dataset_meta('reside_ots_train')
    build_meta_tree(meta, str(tmp_path))
    clear = tmp_path / meta.root / 'clear'
    write_image(str(tmp_path / meta.root / 'haze' / 'part4' / '0025_1_0.2.jpg'))
    (clear / '0025.jpg').write_bytes(b'broken')
    code, out = run_check(['-meta', 'reside_ots_train', '--root', str(tmp_path)], capsys)
    assert code == 1 and 'unreadable: 1\n' in out and f'{clear}/0025.jpg: cannot be decoded' in out
    assert out.count('cannot be decoded') == 1


def test_max_items_is_reported(good_root, tmp_path, capsys):
    options = {'datasets': {'test_1': {'name': 'sots', 'type': 'MultiDegradationPairedDataset', 'data_root': 'data',
                                       'meta': 'reside_sots_outdoor_test', 'max_items': 1}}}
    opt_file = tmp_path / 'opt.yml'
    opt_file.write_text(yaml.safe_dump(options))
    code, out = run_check(['-opt', str(opt_file), '--root', str(tmp_path)], capsys)
    assert code == 0 and 'max_items: the run uses the first 1 of these 2 pairs' in out


def test_missing_meta_is_checked_through_its_fallback(good_root, tmp_path, capsys):
    options = {'datasets': {'train': {'name': 'aio', 'type': 'MultiDegradationPairedDataset', 'data_root': 'data',
                                      'meta': 'restorevar_trainset', 'fallback_meta': ['lolv1_test']}}}
    opt_file = tmp_path / 'opt.yml'
    opt_file.write_text(yaml.safe_dump(options))
    code, out = run_check(['-opt', str(opt_file), '--root', str(tmp_path)], capsys)
    assert code == 0, out
    assert f'meta restorevar_trainset is not available ({good_root}/trainset.json: list file does not exist' in out
    assert 'the run uses fallback_meta lolv1_test' in out
    assert 'lolv1_test  LOLv1' in out and 'result: every pair is usable' in out


def test_images_smaller_than_the_ssim_window_are_warned_about(tmp_path, capsys):
    root = tmp_path / 'data'
    build_meta_tree(load_dataset_meta('lolv1_test'), str(root))
    eval15 = root / 'LOLdataset' / 'eval15'
    write_image(str(eval15 / 'low' / '7.png'), size=(6, 40))
    write_image(str(eval15 / 'high' / '7.png'), size=(6, 40))
    code, out = run_check(['-meta', 'lolv1_test', '--root', str(root)], capsys)
    assert code == 0, out
    warnings = out.split('warnings:')[1]
    assert 'smaller than the metrics can score (at least 7 px per side for ssim: the 7x7 SSIM window)' in warnings
    assert f'{eval15}/low/7.png is 6x40' in warnings and f'{eval15}/high/7.png is 6x40' in warnings
    assert warnings.count('is 6x40') == 2 and '1.png' not in warnings


def test_metric_sizes_are_checked_after_the_transform_of_val_entries(tmp_path, capsys):
    root = tmp_path / 'data'
    build_meta_tree(load_dataset_meta('lolv1_test'), str(root))
    for side in ('low', 'high'):
        write_image(str(root / 'LOLdataset' / 'eval15' / side / '1.png'), size=(20, 40))
        write_image(str(root / 'LOLdataset' / 'eval15' / side / '22.png'), size=(40, 31))
    entry = {'type': 'MultiDegradationPairedDataset', 'data_root': 'data', 'meta': 'lolv1_test'}
    options = {'datasets': {'train': dict(entry, name='t', transform='native'),
                            'val_1': dict(entry, name='native', transform='native'),
                            'val_2': dict(entry, name='resized', transform={'type': 'paper_512', 'size': 32})},
               'val': {'metrics': {'ssim': {'type': 'calculate_ssim_skimage'},
                                   'lpips': {'type': 'calculate_lpips', 'net': 'alex'}}}}
    opt_file = tmp_path / 'opt.yml'
    opt_file.write_text(yaml.safe_dump(options))
    code, out = run_check(['-opt', str(opt_file), '--root', str(tmp_path)], capsys)
    assert code == 0, out
    sections = {part.split()[0]: part for part in out.split('== ')[1:]}
    assert "at least 31 px per side for lpips: LPIPS alex's backbone" in sections['datasets.val_1']
    assert 'low/1.png is 20x40\n' in sections['datasets.val_1'] and '22.png' not in sections['datasets.val_1']
    assert 'smaller than the metrics' not in sections['datasets.val_2']  # 32 x 32 after paper_512
    options['datasets']['val_2']['transform']['size'] = 24
    opt_file.write_text(yaml.safe_dump(options))
    out = run_check(['-opt', str(opt_file), '--root', str(tmp_path)], capsys)[1]
    assert 'low/22.png is 40x31, 24x24 after transform paper_512' in out.split('== datasets.val_2')[1]
    assert 'smaller than the metrics' not in sections['datasets.train']  # no metrics on training items
