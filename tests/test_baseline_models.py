"""PromptIR through RestorationModel and AWRaCLe through AWRaCLeModel: context pairs, seeded test choice,
fixed pairs and the CLIP token cache, CLIP weight files, and `basicsr train` / `basicsr test` of the demos."""
import argparse

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import yaml
from basicsr.archs import build_network
from basicsr.models import build_model
from PIL import Image
from torch.utils.data import default_collate

from helpers.dataset_trees import build_meta_tree
from helpers.runs import (
    REPO,
    load_option_file,
    run_cli,
    write_options,
    write_paired_folders,
)
from restorevar_plugin.commands import check_data
from restorevar_plugin.data.in_context_dataset import InContextPairedDataset
from restorevar_plugin.data.meta import load_dataset_meta
from restorevar_plugin.data.synthetic_degradation_dataset import (
    SyntheticDegradationDataset,
)
from restorevar_plugin.data.transforms import clip_geometry
from restorevar_plugin.evaluation import read_metrics_csv
from restorevar_plugin.harness import resolve_option_paths
from restorevar_plugin.metrics.protocols import PROTOCOLS

DEMO = REPO / 'options' / 'demo'


def in_context(phase, seed=0, **extra):
    opt = {'name': f'ctx_{phase}', 'type': 'InContextPairedDataset', 'phase': phase, 'seed': seed,
           'context_size': 32, 'query': {'type': 'SyntheticDegradationDataset', 'size': 32, 'seed': 0}}
    opt.update(extra)
    return InContextPairedDataset(opt)


def test_context_pairs_share_the_query_degradation_and_are_another_sample():
    dataset = in_context('train')
    pool = {labels['lq_path']: labels for labels in dataset.pool_labels}
    for index in range(len(dataset)):
        item = dataset[index]
        context_labels = pool[item['context_lq_path']]
        assert context_labels['degradation'] == item['degradation']
        assert context_labels['gt_path'] == item['context_gt_path'] != item['gt_path']
        assert item['context_lq'].shape == item['context_gt'].shape == (3, 32, 32)


def test_seeded_test_choice_is_reproducible():
    pool = {'type': 'SyntheticDegradationDataset', 'split': 'train', 'size': 32, 'seed': 0}

    def choices(seed):
        dataset = in_context('test', seed=seed, context=pool)
        return [dataset.context_index(index, dataset.query.item_labels(index)) for index in range(len(dataset))]

    first, again, other = choices(0), choices(0), choices(5)
    assert first == again
    assert first != other
    dataset = in_context('test', context=pool)
    item, item_again = dataset[3], dataset[3]
    assert item['context_lq_path'] == item_again['context_lq_path']
    assert torch.equal(item['context_lq'], item_again['context_lq'])


def test_intensity_splits_are_kept_with_match_on_dataset(tmp_path):
    metas = []
    for split in ('low', 'high'):
        write_paired_folders(tmp_path / split, count=3, size=40, seed=len(split))
        pairing = {'rule': 'same_name', 'lq_dir': 'lq', 'gt_dir': 'gt'}
        metas.append({'name': f'rain_{split}', 'dataset': f'rain-{split}', 'degradation': 'rain', 'split': 'train',
                      'root': split, 'source': 'test', 'pairing': pairing})
    query = {'type': 'MultiDegradationPairedDataset', 'data_root': str(tmp_path), 'meta': metas,
             'transform': {'type': 'promptir', 'crop_size': 32}}
    dataset = InContextPairedDataset({'name': 'splits', 'phase': 'train', 'context_size': 24,
                                      'match': ['degradation', 'dataset'], 'query': dict(query, balance='none')})
    pool = {labels['lq_path']: labels for labels in dataset.pool_labels}
    for index in range(len(dataset)):
        item = dataset[index]
        assert pool[item['context_lq_path']]['dataset'] == item['dataset']
        assert item['context_lq_path'].split('/')[-3] == item['lq_path'].split('/')[-3]
        assert item['context_lq_path'] != item['lq_path'] and item['context_gt'].shape == (3, 24, 24)
    with pytest.raises(ValueError, match='match key'):
        InContextPairedDataset({'name': 'bad', 'phase': 'train', 'match': ['intensity'],
                                'query': dict(query, balance='none')})


def test_a_query_without_any_other_pair_of_its_degradation_is_an_error():
    pool = {'type': 'SyntheticDegradationDataset', 'split': 'train', 'size': 32, 'degradations': ['haze']}
    dataset = in_context('test', context=pool)
    with pytest.raises(ValueError, match="no context pair with {'degradation': 'rain'}"):
        dataset[1]


def test_clip_geometry_equals_the_official_pil_preprocessing():
    rng = np.random.default_rng(0)
    for shape in ((45, 70, 3), (90, 33, 3)):
        image = (rng.integers(0, 256, shape) / 255.0).astype(np.float32)
        official = T.Compose([T.Resize(24, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(24)])
        expected = np.asarray(official(Image.fromarray(np.round(image * 255).astype(np.uint8))), np.float32) / 255
        assert np.array_equal(clip_geometry(image, 24), expected)


def awracle_test_options(tmp_path, **path):
    opt = load_option_file(DEMO / 'awracle_test.yml')
    opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'] = dict({'pretrain_network_g': None, 'results_root': str(tmp_path), 'log': str(tmp_path),
                        'visualization': str(tmp_path / 'vis')}, **path)
    return opt


def test_fixed_context_pair_and_cached_clip_tokens(tmp_path):
    gt_dir, lq_dir = write_paired_folders(tmp_path / 'ctx', count=1, size=40)
    opt = awracle_test_options(tmp_path)
    opt['val']['context'] = {'lq': str(lq_dir / '0000.png'), 'gt': str(gt_dir / '0000.png')}
    torch.manual_seed(0)
    model = build_model(opt)
    calls = []
    original = model.net_g.encode_context
    model.net_g.encode_context = lambda *args: calls.append(1) or original(*args)
    lq = torch.rand(2, 3, 32, 32)
    outputs = []
    for _ in range(2):
        model.feed_data({'lq': lq})
        model.test()
        outputs.append(model.output)
    assert len(calls) == 1 and torch.equal(outputs[0], outputs[1])
    model.cache_context = False
    model.test()
    expected = model.net_g(lq, model.fixed_context['lq'], model.fixed_context['gt'])
    assert torch.allclose(model.output, expected, atol=1e-6) and torch.allclose(outputs[0], expected, atol=1e-6)
    context_lq, context_gt = torch.rand(2, 3, 50, 40), torch.rand(2, 3, 50, 40)
    model.cache_context = True
    model.feed_data({'lq': lq, 'context_lq': context_lq, 'context_gt': context_gt})  # pairs without paths: no cache
    model.test()
    assert len(model.context_cache) == 1
    assert torch.allclose(model.output, model.net_g(lq, context_lq, context_gt), atol=1e-6)
    with pytest.raises(ValueError, match='val.context'):
        model.fixed_context = None
        model.feed_data({'lq': lq})


def test_clip_weights_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    source = build_model(awracle_test_options(tmp_path)).net_g.clip.state_dict()
    clip_file = tmp_path / 'clip_tiny.pth'
    torch.save(source, clip_file)
    torch.manual_seed(2)
    model = build_model(awracle_test_options(tmp_path, pretrain_network_clip=str(clip_file)))
    assert all(torch.equal(value, source[key]) for key, value in model.net_g.clip.state_dict().items())
    with pytest.raises(FileNotFoundError, match=r"'ViT-B-32.pt' not found: looked for .*openaipublic"):
        build_model(awracle_test_options(tmp_path, pretrain_network_clip=str(tmp_path / 'ViT-B-32.pt')))


def training_l1(method, checkpoint):
    """Mean L1 loss of the network in ``checkpoint`` on fixed (val-phase) items of the demo's training pictures."""
    train = yaml.safe_load((DEMO / f'{method}_train.yml').read_text())
    net = build_network(dict(train['network_g']))
    net.load_state_dict(torch.load(checkpoint, weights_only=True)['params'])
    query = {'type': 'SyntheticDegradationDataset', 'split': 'train', 'size': 32, 'seed': 3}
    if method == 'awracle':
        dataset = InContextPairedDataset({'name': 'fixed', 'phase': 'val', 'context_size': 32, 'query': query})
    else:
        dataset = SyntheticDegradationDataset(dict(query, phase='val'))
    batch = default_collate([dataset[index] for index in range(len(dataset))])
    inputs = (batch['lq'], batch['context_lq'], batch['context_gt']) if method == 'awracle' else (batch['lq'], )
    with torch.no_grad():
        return float((net.eval()(*inputs) - batch['gt']).abs().mean())


@pytest.mark.parametrize('method', ['promptir', 'awracle'])
def test_tiny_baseline_trains_with_falling_loss_then_tests(method, tmp_path):
    train = yaml.safe_load((DEMO / f'{method}_train.yml').read_text())
    train['train']['total_iter'] = 20
    train['logger'].update(print_freq=10, save_checkpoint_freq=1)
    train['val']['val_freq'] = 20
    train_file = write_options(tmp_path / 'train.yml', train)
    result = run_cli(['train', '-opt', str(train_file)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    models = tmp_path / 'experiments' / train['name'] / 'models'
    after_one, after_all = training_l1(method, models / 'net_g_1.pth'), training_l1(method, models / 'net_g_20.pth')
    assert after_all < 0.9 * after_one, (after_one, after_all)
    test = yaml.safe_load((DEMO / f'{method}_test.yml').read_text())
    test['path']['pretrain_network_g'] = f'experiments/{train["name"]}/models/net_g_20.pth'
    test_file = write_options(tmp_path / 'test.yml', test)
    result = run_cli(['test', '-opt', str(test_file)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / 'results' / test['name']
    images = sorted((results / 'visualization' / 'synthetic_val').glob('*.png'))
    assert len(images) == 20 and len([path for path in images if path.stem.endswith('_grid')]) == 10
    assert '# psnr:' in result.stdout + result.stderr
    rows = read_metrics_csv(results / 'synthetic_val_metrics.csv')  # the tables every model writes
    assert list(rows[0]) == ['image', 'psnr', 'ssim', 'time_s'] and len(rows) == 11 and rows[-1]['image'] == 'mean'
    record = PROTOCOLS['promptir'].describe()
    assert record in (results / 'synthetic_val_metrics.md').read_text() and record in result.stdout + result.stderr


def test_nested_dataset_blocks_resolve_against_the_root(tmp_path):
    inline_meta = {'name': 'm', 'pairing': {'rule': 'same_name', 'lq_dir': 'lq', 'gt_dir': 'gt'}}
    opt = {'datasets': {
        'train': {'type': 'InContextPairedDataset', 'query': {'data_root': 'data/a', 'meta': [inline_meta]},
                  'context': {'type': 'ConcatenatedDataset',
                              'parts': [{'clean_folder': 'clean'}, {'data_root': '/abs'}]}},
    }}
    resolve_option_paths(opt, tmp_path)
    train = opt['datasets']['train']
    assert train['query']['data_root'] == str(tmp_path / 'data/a')
    assert train['query']['meta'][0]['pairing']['lq_dir'] == 'lq'  # relative to the meta's root, left alone
    assert [part.get('clean_folder', part.get('data_root')) for part in train['context']['parts']] == [
        str(tmp_path / 'clean'), '/abs']


def test_check_data_reads_the_nested_dataset_blocks(tmp_path, capsys):
    build_meta_tree(load_dataset_meta('lolv1_test'), str(tmp_path / 'data'))
    paired = {'type': 'MultiDegradationPairedDataset', 'data_root': 'data', 'meta': ['lolv1_test']}
    options = {'name': 'x', 'datasets': {
        'train': {'type': 'InContextPairedDataset', 'query': paired,
                  'context': {'type': 'ConcatenatedDataset', 'parts': [dict(paired, repeat=2)]}}}}
    opt_file = write_options(tmp_path / 'opt.yml', options)
    parser = argparse.ArgumentParser()
    check_data.add_arguments(parser)
    code = check_data.run(parser.parse_args(['-opt', str(opt_file), '--root', str(tmp_path)]))
    out = capsys.readouterr().out
    assert code == 0, out
    assert f'datasets.train.query (MultiDegradationPairedDataset)  data_root={tmp_path / "data"}' in out
    assert 'datasets.train.context.parts[0] (MultiDegradationPairedDataset)' in out
