"""Option files are checked before anything is built or written: every problem at once, with its YAML path and the
closest valid key; every option file in the repository passes."""
import copy

import pytest
import yaml

from helpers.runs import REPO, run_cli, tiny_restoration_options, write_options
from restorevar_plugin.harness import OptionError, read_option_file
from restorevar_plugin.option_schema import check_options

# BasicSR option files; `basicsr benchmark` files (methods x datasets) have their own schema and loader.
OPTION_FILES = sorted(path for path in (REPO / 'options').rglob('*.yml') if 'methods' not in read_option_file(path))


@pytest.mark.parametrize('path', OPTION_FILES, ids=[str(p.relative_to(REPO)) for p in OPTION_FILES])
def test_every_basicsr_option_file_in_the_repository_passes(path):
    assert check_options(read_option_file(path)) == []


def test_the_test_suites_tiny_options_pass():
    assert check_options(tiny_restoration_options('tiny', ema_decay=0.9, nonfinite='stop')) == []


def test_every_problem_is_reported_with_its_path_and_closest_key():
    options = tiny_restoration_options('bad')
    options['vall'] = options.pop('val')
    options['train']['optim_g']['lr'] = 'abc'
    options['train']['total_iters'] = 10
    options['train']['pixel_opt']['reduce'] = 'sum'
    options['network_g']['num_blocks'] = 3
    options['datasets']['train']['batch_size_per_gpu'] = 'two'
    options['datasets']['train']['use_flip'] = True
    options['path']['pretrain_network_gg'] = 'x.pth'
    options['logger']['print_frequency'] = 1
    options['train']['scheduler']['warmup_iters'] = 2
    problems = check_options(options)
    assert problems == [
        'vall: unknown option; did you mean val?',
        "network_g.num_blocks: unknown argument of RRDBNet; did you mean num_block?",
        "datasets.train.batch_size_per_gpu: expected an integer, got 'two'",
        "datasets.train.use_flip: unknown option; did you mean use_hflip?",
        'path.pretrain_network_gg: unknown option; did you mean pretrain_network_g?',
        'train.total_iters: unknown option; did you mean total_iter?',
        'train.pixel_opt.reduce: unknown argument of L1Loss; did you mean reduction?',
        "train.optim_g.lr: expected a number, got 'abc'",
        'train.scheduler.warmup_iters: unknown argument of LinearWarmupCosineLR; did you mean warmup_iter?',
        'logger.print_frequency: unknown option; did you mean print_freq?',
    ]


def test_restorevar_network_arguments_are_checked_against_the_constructor():
    options = read_option_file(REPO / 'options' / 'demo' / 'restorevar_stage1.yml')
    options['network_g']['dept'] = 3
    options['network_g']['mlp_ratio'] = 'wide'
    options['train']['stag'] = 'transformer'
    assert check_options(options) == [
        'network_g.dept: unknown argument of RestoreVARTransformer; did you mean depth?',
        "network_g.mlp_ratio: expected a number, got 'wide'",
        'train.stag: unknown option; did you mean stage?',
    ]


def test_cli_reports_all_problems_before_writing_anything(tmp_path, toy_root):
    options = tiny_restoration_options('checked')
    options['vall'] = options.pop('val')
    options['train']['optim_g']['lr'] = 'abc'
    option_file = write_options(tmp_path / 'checked.yml', options)
    result = run_cli(['train', '-opt', str(option_file)], cwd=toy_root)
    assert result.returncode == 2
    assert f'basicsr train: error: {option_file}: 2 problems in the options:\n' in result.stderr
    assert '  vall: unknown option; did you mean val?\n' in result.stderr
    assert "  train.optim_g.lr: expected a number, got 'abc'" in result.stderr
    assert 'Traceback' not in result.stderr
    assert sorted(path.name for path in toy_root.iterdir()) == ['data']


def test_force_yml_values_are_checked_too(tmp_path):
    option_file = write_options(tmp_path / 'ok.yml', tiny_restoration_options('ok'))
    options = read_option_file(option_file, ['train:total_iter=abc', 'val:val_freq=3'])
    assert options['val']['val_freq'] == 3
    assert check_options(options) == ["train.total_iter: expected an integer, got 'abc'"]
    with pytest.raises(OptionError, match='--force_yml vall:val_freq=3: the option file has no vall block'):
        read_option_file(option_file, ['vall:val_freq=3'])


def test_yaml_syntax_error_names_file_line_and_column(tmp_path, toy_root):
    text = yaml.safe_dump(tiny_restoration_options('syntax'), sort_keys=False).splitlines()
    line = next(index for index, content in enumerate(text) if content.startswith('train:'))
    text.insert(line + 1, '  total_iter: [4')
    option_file = tmp_path / 'syntax.yml'
    option_file.write_text('\n'.join(text) + '\n')
    result = run_cli(['train', '-opt', str(option_file)], cwd=toy_root)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f'basicsr train: error: {option_file}:') and 'YAML syntax error' in error
    reported_line = int(error.split(f'{option_file}:')[1].split(':')[0])
    assert line + 2 <= reported_line <= line + 3


def test_plugins_declare_keys_on_their_model_class():
    from basicsr.utils.registry import MODEL_REGISTRY

    from restorevar_plugin.models.restoration_model import RestorationModel

    options = tiny_restoration_options('declared')
    options['train']['my_knob'] = 1
    problems = check_options(copy.deepcopy(options))
    assert len(problems) == 1 and problems[0].startswith('train.my_knob: unknown option; valid: amp, dcn_lr_mul, ')

    class KnobModel(RestorationModel):
        option_schema = {'train': {'my_knob': 'int'}}

    MODEL_REGISTRY._obj_map['KnobModel'] = KnobModel
    try:
        options['model_type'] = 'KnobModel'
        assert check_options(copy.deepcopy(options)) == []
        options['train']['my_knob'] = 'x'
        assert check_options(options) == ["train.my_knob: expected an integer, got 'x'"]
    finally:
        del MODEL_REGISTRY._obj_map['KnobModel']


def test_inference_options_are_accepted_where_they_are_read(tmp_path):
    option_file = write_options(tmp_path / 'fast.yml', tiny_restoration_options('fast'))
    options = read_option_file(option_file, ['val:precision=bf16', 'val:compile=false', 'val:retain_cpu_memory=true'])
    assert check_options(copy.deepcopy(options)) == []
    options['val']['prepacked_linears'] = True  # read by RestoreVAR's transformer only
    assert check_options(options)[0].startswith('val.prepacked_linears: unknown option')
    restorevar = read_option_file(REPO / 'options' / 'demo' / 'restorevar_stage3.yml', [
        'val:precision=bf16', 'val:compile=false', 'val:retain_cpu_memory=true', 'val:prepacked_linears=false',
        'val:channels_last=false'])
    assert check_options(copy.deepcopy(restorevar)) == []
    restorevar['val']['retain_cpu_memory'] = 'yes'
    assert check_options(restorevar) == ["val.retain_cpu_memory: expected true or false, got 'yes'"]
