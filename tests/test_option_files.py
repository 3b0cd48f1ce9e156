"""Every option file in options/ parses, names only registered types, and builds: full size on `meta`, demo for real."""
import copy
from pathlib import Path

import pytest
import torch
from basicsr.archs import build_network
from basicsr.models import build_model

from helpers.runs import REPO, load_option_file
from restorevar_plugin.benchmark.options import load_benchmark_options
from restorevar_plugin.data.multi_degradation_paired_dataset import (
    paired_dataset_settings,
)
from restorevar_plugin.evaluation import configured_metrics
from restorevar_plugin.harness import check_option_schema
from restorevar_plugin.models.stages import STAGES

ALL_OPTION_FILES = sorted((REPO / 'options').rglob('*.yml'))
BENCHMARKS = [path for path in ALL_OPTION_FILES if 'methods' in load_option_file(path)]  # `basicsr benchmark` files
OPTION_FILES = [path for path in ALL_OPTION_FILES if path not in BENCHMARKS]
FULL_SIZE = [path for path in OPTION_FILES if 'demo' not in path.relative_to(REPO).parts]
DEMO = [path for path in OPTION_FILES if 'demo' in path.relative_to(REPO).parts]
OFFICIAL_PARAMETERS = {
    'MultiScaleVQVAE': 108_948_355,
    'RestoreVARTransformer': 273_986_097,
    'LatentRefinerTransformer': 22_967_616,
    'PromptIR': 35_592_263,
    'AWRaCLe': 186_463_001,
}
BASELINE_FILES = ('promptir_aior5_train.yml', 'awracle_aior5_train.yml', 'promptir_official_train.yml',
                  'awracle_official_train.yml', 'promptir_test.yml', 'awracle_test.yml')


def paired_blocks(dataset_opt):
    """Every MultiDegradationPairedDataset block in a dataset entry, nested ones (query, context, parts) included."""
    blocks = [dataset_opt] if dataset_opt.get('type') == 'MultiDegradationPairedDataset' else []
    nested = [dataset_opt.get('query'), dataset_opt.get('context'), *dataset_opt.get('parts', [])]
    return blocks + [block for inner in nested if inner for block in paired_blocks(inner)]


def ids(paths):
    return [str(path.relative_to(REPO / 'options')) for path in paths]


def test_the_option_files_exist():
    names = {path.name for path in FULL_SIZE}
    assert {'restorevar_stage1.yml', 'restorevar_stage2.yml', 'restorevar_stage3.yml', 'restorevar_test.yml'} <= names
    demo_names = {path.name for path in DEMO}
    assert {'restorevar_tokenizer.yml', 'restorevar_stage1.yml', 'restorevar_stage2.yml', 'restorevar_stage3.yml',
            'restorevar_test.yml', 'promptir_train.yml', 'promptir_test.yml', 'awracle_train.yml',
            'awracle_test.yml'} <= demo_names
    assert set(BASELINE_FILES) <= {path.name for path in FULL_SIZE if path.parent.name == 'baselines'}


@pytest.mark.parametrize('path', OPTION_FILES, ids=ids(OPTION_FILES))
def test_option_file_parses_and_names_registered_types(path):
    opt = load_option_file(path)
    assert opt['name']
    if 'analysis' in opt:  # `basicsr analyze-scales` files: a VQVAE and datasets, no model
        opt['model_type'] = 'RestoreVARModel'
    check_option_schema(opt)
    if 'train' in opt and opt['model_type'] == 'RestoreVARModel':
        assert opt['train']['stage'] in STAGES


@pytest.mark.parametrize('path', FULL_SIZE, ids=ids(FULL_SIZE))
def test_full_size_networks_build_on_meta_with_official_sizes(path):
    opt = load_option_file(path)
    networks = {key: value for key, value in opt.items() if key.startswith('network_')}
    assert networks
    for key, network_opt in networks.items():
        with torch.device('meta'):
            network = build_network(copy.deepcopy(network_opt))
        count = sum(param.numel() for param in network.parameters())
        expected = OFFICIAL_PARAMETERS.get(network_opt['type'])
        if expected is not None:
            assert count == expected, f'{path.name} {key}: {count:,} parameters'
    for key, dataset_opt in opt['datasets'].items():
        for block in paired_blocks(dataset_opt):
            block = {name: value for name, value in block.items() if name != 'repeat'}
            settings = paired_dataset_settings(dict(block, phase=key.split('_')[0]))
            assert settings.metas


@pytest.mark.parametrize('path', BENCHMARKS, ids=ids(BENCHMARKS))
def test_benchmark_option_file_checks_and_its_networks_build(path):
    spec = load_benchmark_options(path, REPO)
    assert spec.methods and spec.datasets
    for method in spec.methods:
        for key, network_opt in method.model_opt.items():
            if key.startswith('network_') and 'demo' not in path.parts:
                with torch.device('meta'):
                    network = build_network(copy.deepcopy(network_opt))
                expected = OFFICIAL_PARAMETERS.get(network_opt['type'])
                if expected is not None:
                    assert sum(param.numel() for param in network.parameters()) == expected, f'{method.label} {key}'


def test_benchmark_option_files_exist():
    names = {str(path.relative_to(REPO / 'options')) for path in BENCHMARKS}
    assert {'benchmark_aior.yml', 'benchmark_generalization.yml', 'demo/benchmark_aior.yml',
            'demo/benchmark_generalization.yml'} <= names


def test_paper_recipe_numbers():
    stage1 = load_option_file(REPO / 'options' / 'restorevar_stage1.yml')
    assert stage1['network_vqvae']['patch_nums'] == [1, 2, 3, 4, 6, 9, 13, 18, 24, 32]
    train = stage1['train']
    assert (train['optim_g']['type'], train['optim_g']['lr'], train['optim_g']['betas']) == ('AdamW', 1e-4, [0.9, 0.95])
    assert train['optim_g']['weight_decay'] == 0.05 and train['grad_clip'] == 2.0 and train['amp'] == 'fp16'
    assert stage1['datasets']['train']['batch_size_per_gpu'] == 24
    for stage in (stage1, load_option_file(REPO / 'options' / 'restorevar_stage3.yml')):
        train_set = stage['datasets']['train']
        assert train_set['meta'] == 'restorevar_trainset' and len(train_set['fallback_meta']) == 5
        assert 'epoch_length' not in train_set and train_set['balance'] == 'degradation'
        train = stage['train']
        assert (train['total_epochs'], train['scheduler']['warmup_epochs']) == (50, 1)
        assert 'total_iter' not in train and 'total_iter' not in train['scheduler']
        assert stage['val']['val_freq_epochs'] == stage['logger']['save_checkpoint_freq_epochs'] == 1


def test_baseline_recipe_numbers():
    baselines = REPO / 'options' / 'baselines'
    for name, batch, gpus, items in (('promptir_aior5_train.yml', 8, 4, 138_435),
                                     ('promptir_official_train.yml', 8, 4, 3 * 3 * 5_144 + 120 * 200 + 72_135),
                                     ('awracle_aior5_train.yml', 4, 2, 138_435),
                                     ('awracle_official_train.yml', 4, 2, 100_000)):
        opt = load_option_file(baselines / name)
        train = opt['train']
        recipe = (train['optim_g']['type'], train['optim_g']['lr'], train['pixel_opt']['type'])
        assert recipe == ('AdamW', 2e-4, 'L1Loss')
        assert opt['datasets']['train']['batch_size_per_gpu'] == batch
        per_epoch = items // (batch * gpus)
        assert train['total_iter'] == 120 * per_epoch, name
        assert (train['scheduler']['warmup_iter'], train['scheduler']['max_iter']) == (15 * per_epoch, 150 * per_epoch)
    official = load_option_file(baselines / 'awracle_official_train.yml')['datasets']['train']
    assert official['match'] == ['degradation', 'dataset'] and len(official['query']['meta']) == 6
    reference = load_option_file(REPO / 'options' / 'restorevar_test.yml')
    for name in ('promptir_test.yml', 'awracle_test.yml'):
        opt = load_option_file(baselines / name)
        assert configured_metrics(opt['val']) == configured_metrics(reference['val'])
        assert opt['val']['protocol'] == reference['val']['protocol'] == 'restorevar_paper'
        queries = [entry.get('query', entry) for entry in opt['datasets'].values()]
        assert [(q['meta'], q['transform']) for q in queries] == [(entry['meta'], entry['transform'])
                                                                  for entry in reference['datasets'].values()]


@pytest.mark.parametrize('path', DEMO, ids=ids(DEMO))
def test_demo_option_file_builds_its_model(path, tmp_path):
    opt = load_option_file(path)
    if 'analysis' in opt:
        assert isinstance(build_network(copy.deepcopy(opt['network_vqvae'])), torch.nn.Module)
        return
    is_train = 'train' in opt
    opt.update(is_train=is_train, dist=False, rank=0, world_size=1, num_gpu=0)
    opt.setdefault('path', {})
    for key in list(opt['path']):
        if key.startswith('pretrain_'):
            opt['path'][key] = None
    for key in ('models', 'training_states', 'visualization', 'results_root'):
        opt['path'][key] = str(tmp_path / key)
    model = build_model(opt)
    if is_train:
        assert model.optimizers and model.schedulers
    assert Path(model.opt['path']['models']).name == 'models'
