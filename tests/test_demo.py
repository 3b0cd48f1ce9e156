"""``basicsr demo``: the shipped checkpoints against their manifest, the default run on them, the quick budget
retrained from scratch (stages reused on a second call), shipping fp16 copies, and the summary's arithmetic."""
import csv
import re

import pytest
import torch
import yaml

from restorevar_plugin.benchmark.tables import read_csv_without_comments
from restorevar_plugin.cli import main
from restorevar_plugin.demo.recipe import (
    BUDGETS,
    MANIFEST_FILE,
    STAGES,
    WEIGHTS,
    load_manifest,
    option_file,
    shipped_weights,
    stage_by_name,
    stage_checkpoint,
)
from restorevar_plugin.demo.shipping import (
    sha256_of,
    ship_checkpoints,
    verify_checkpoints,
)
from restorevar_plugin.demo.summary import summarize
from restorevar_plugin.demo.training import read_timings, train_budget

METHODS = ('RestoreVAR', 'RestoreVAR w/o refiner', 'PromptIR', 'degraded input')
DEGRADATIONS = ('haze', 'rain', 'snow', 'low_light', 'blur', 'haze+rain')


def test_shipped_checkpoints_match_the_manifest():
    manifest = load_manifest()
    assert sorted(manifest['files']) == sorted(name for _, name in WEIGHTS.values())
    assert verify_checkpoints() == []
    for name, record in manifest['files'].items():
        path = MANIFEST_FILE.parent / name
        assert sha256_of(path) == record['sha256']
        assert path.stat().st_size == record['size_bytes']
        assert record['budget'] in BUDGETS and record['training_seconds'] > 0 and record['command']
        params = torch.load(path, map_location='cpu', weights_only=True)['params']
        assert all(value.dtype == torch.float16 for value in params.values() if value.is_floating_point())


def test_a_changed_checkpoint_is_reported(tmp_path):
    manifest = load_manifest()
    for name in manifest['files']:
        (tmp_path / name).write_bytes((MANIFEST_FILE.parent / name).read_bytes())
    victim = next(iter(manifest['files']))
    (tmp_path / victim).write_bytes(b'not a checkpoint')
    problems = verify_checkpoints(tmp_path, manifest)
    assert len(problems) == 1 and victim in problems[0]


def test_every_budget_has_every_stage_with_the_shipped_architectures():
    with open(option_file('full', STAGES[0]).parents[1] / 'restorevar_test.yml', encoding='utf-8') as handle:
        model = yaml.safe_load(handle)
    for budget in BUDGETS:
        for stage in STAGES:
            with open(option_file(budget, stage), encoding='utf-8') as handle:
                opt = yaml.safe_load(handle)
            assert opt['name'] == f'demo_{budget}_{stage.name}'
            if stage.name != 'promptir':
                assert opt['network_vqvae'] == model['network_vqvae']
            if stage.name in ('transformer', 'refiner'):
                architecture = {key: value for key, value in opt['network_g'].items() if key != 'cond_gain_init'}
                assert architecture == model['network_g']  # cond_gain_init only sets initial values
            if stage.name == 'refiner':
                assert opt['network_refiner'] == model['network_refiner']


def _check_outputs(results_dir):
    for name in ('quality.md', 'quality.csv', 'cost.md', 'cost.csv', 'report.html', 'summary.md', 'summary.csv'):
        assert (results_dir / name).is_file(), name
    assert list((results_dir / 'grids').rglob('*.png'))
    summary = summarize(results_dir / 'quality.csv')
    assert tuple(summary.degradations) == DEGRADATIONS
    for method in METHODS:
        for degradation in DEGRADATIONS:
            assert 0 < summary.psnr[(method, degradation)] < 100
    with open(results_dir / 'summary.csv', encoding='utf-8', newline='') as handle:
        rows = list(csv.DictReader(handle))
    assert [row['method'] for row in rows] == list(METHODS)
    for row in rows:
        assert float(row['mean']) == pytest.approx(sum(float(row[name]) for name in DEGRADATIONS) / 6)
    costs = {row['method']: row for row in read_csv_without_comments(results_dir / 'cost.csv')}
    for method in METHODS[:3]:
        row = costs[method]
        assert float(row['params_M']) > 0 and float(row['TFLOPs_per_image']) > 0, row
        assert float(row['time_per_image_s']) > 0 and int(row['network_evaluations_per_image']) >= 1, row
    assert float(costs['RestoreVAR']['params_run_per_image_M']) > float(
        costs['RestoreVAR w/o refiner']['params_run_per_image_M'])  # the ablation does not run the refiner
    report = (results_dir / 'report.html').read_text(encoding='utf-8')
    assert all(method in report for method in METHODS)
    sources = re.findall(r'<img[^>]* src="([^"]+)"', report)
    assert sources and all((results_dir / source).is_file() for source in sources)
    return summary


def test_demo_with_the_shipped_checkpoints(tmp_path, capsys):
    assert main(['demo', '--root', str(tmp_path)]) == 0
    summary = _check_outputs(tmp_path / 'results' / 'demo')
    printed = capsys.readouterr().out
    assert '| method (PSNR dB) | haze | rain | snow | low_light | blur | haze+rain | mean |' in printed
    assert f'{summary.mean["PromptIR"]:.2f}' in printed
    assert 'target RestoreVAR > degraded input on mean PSNR: met' in printed
    # the shipped checkpoints meet every target (margins 0.27, 0.62 and 1.93 dB when they were made)
    assert [met for _, _, met in summary.targets] == [True, True, True], summary.targets
    assert 'basicsr restore --demo restorevar|promptir' in printed


def test_demo_train_quick_then_reuse_and_ship(tmp_path, capsys):
    assert main(['demo', '--train', '--budget', 'quick', '--root', str(tmp_path)]) == 0
    _check_outputs(tmp_path / 'results' / 'demo_quick')
    for stage in STAGES:
        assert stage_checkpoint(tmp_path, 'quick', stage).is_file()
    assert set(read_timings(tmp_path, 'quick')) == {stage.name for stage in STAGES}
    report = train_budget('quick', tmp_path)
    assert all(entry['reused'] for entry in report.values())
    shipped = tmp_path / 'shipped'
    manifest = ship_checkpoints(tmp_path, 'quick', destination=shipped)
    assert verify_checkpoints(shipped, manifest) == []
    assert manifest['files']['restorevar_refiner.pth']['iterations'] == 4
    bytes_before = {name: (shipped / name).read_bytes() for name in manifest['files']}
    refiner = stage_checkpoint(tmp_path, 'quick', stage_by_name('refiner'))
    state = torch.load(refiner, map_location='cpu', weights_only=True)
    for params in (value for key, value in state.items() if key.startswith('params')):
        first = next(iter(params))
        params[first] = params[first] + 1
    torch.save(state, refiner)
    again = ship_checkpoints(tmp_path, 'quick', note='refiner changed', destination=shipped)
    assert verify_checkpoints(shipped, again) == [] and again['note'] == 'refiner changed'
    for name, record in manifest['files'].items():
        changed = name == 'restorevar_refiner.pth'
        assert ((shipped / name).read_bytes() == bytes_before[name]) is not changed, name
        assert (again['files'][name]['sha256'] == record['sha256']) is not changed, name


@pytest.mark.parametrize('argv', [['demo', '--fresh'], ['demo', '--budget', 'quick'], ['demo', '--train']])
def test_demo_rejects_inconsistent_flags(argv, capsys):
    assert main(argv) == 2
    assert 'basicsr demo: error' in capsys.readouterr().out


def test_summary_means_and_targets(tmp_path):
    path = tmp_path / 'quality.csv'
    rows = ['# provenance line', 'table,method,dataset,metric,value,images,lower_better,rank']
    values = {'RestoreVAR': (20.0, 18.0), 'RestoreVAR w/o refiner': (19.0, 19.5), 'PromptIR': (15.0, 16.0),
              'degraded input': (16.0, 17.0)}
    for method, (haze, rain) in values.items():
        rows += [f'table1,{method},haze,PSNR,{haze},4,False,', f'table1,{method},rain,PSNR,{rain},4,False,',
                 f'table1,{method},haze,SSIM,0.5,4,False,']
    path.write_text('\n'.join(rows) + '\n', encoding='utf-8')
    summary = summarize(path)
    assert summary.degradations == ['haze', 'rain']
    assert summary.mean == {'RestoreVAR': 19.0, 'RestoreVAR w/o refiner': 19.25, 'PromptIR': 15.5,
                            'degraded input': 16.5}
    assert summary.targets == [('RestoreVAR', 'degraded input', True), ('PromptIR', 'degraded input', False),
                               ('RestoreVAR', 'RestoreVAR w/o refiner', False)]
    assert '- target PromptIR > degraded input on mean PSNR: NOT met' in summary.markdown()


def test_summary_without_psnr_is_an_error(tmp_path):
    path = tmp_path / 'quality.csv'
    path.write_text('table,method,dataset,metric,value,images,lower_better,rank\n', encoding='utf-8')
    with pytest.raises(ValueError, match='no PSNR'):
        summarize(path)


def test_shipped_weights_cover_every_benchmark_slot():
    with open(MANIFEST_FILE.parent.parent / 'benchmark.yml', encoding='utf-8') as handle:
        options = yaml.safe_load(handle)
    slots = {slot for method in options['methods'] for slot in method['path'].values()}
    assert slots <= set(shipped_weights())
