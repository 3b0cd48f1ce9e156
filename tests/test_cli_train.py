"""The ``basicsr`` command end to end on CPU: list, name hints, train, auto-resume, roots, torchrun."""
import torch

from helpers.runs import (
    REPO,
    run_cli,
    run_torchrun,
    tiny_restoration_options,
    write_options,
)


def test_list_marks_our_registrations():
    result = run_cli(['list'], cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ['*', 'RestorationModel'] for line in lines)
    # BasicSR's own names are listed, unmarked
    assert any(line.split()[:1] == ['SRModel'] for line in lines)


def test_list_rejects_unknown_kind():
    result = run_cli(['list', 'archs'], cwd=REPO)
    assert result.returncode == 2
    assert 'unknown kind' in result.stdout and 'arch' in result.stdout


def test_unknown_registry_name_gets_close_matches(tmp_path, toy_root):
    options = tiny_restoration_options('typo')
    options['model_type'] = 'RestorationModle'
    option_file = write_options(tmp_path / 'opts' / 'typo.yml', options)
    result = run_cli(['train', '-opt', str(option_file)], cwd=toy_root)
    assert result.returncode == 2
    assert "model_type: no model named 'RestorationModle' is registered. Did you mean: RestorationModel" \
        in result.stderr
    assert '_basicsr' not in result.stdout + result.stderr
    assert not (toy_root / 'experiments' / 'typo').exists()

    options = tiny_restoration_options('typo_arch')
    options['network_g']['type'] = 'RRDBnet'
    option_file = write_options(tmp_path / 'opts' / 'typo_arch.yml', options)
    result = run_cli(['train', '-opt', str(option_file)], cwd=toy_root)
    assert result.returncode == 2
    assert "network_g.type: no arch named 'RRDBnet'" in result.stderr and 'RRDBNet' in result.stderr


def test_train_then_auto_resume_from_another_directory(tmp_path, toy_root):
    option_file = write_options(tmp_path / 'opts' / 'toy.yml', tiny_restoration_options('toy', total_iter=4))
    result = run_cli(['train', '-opt', str(option_file)], cwd=toy_root)
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = toy_root / 'experiments' / 'toy'
    assert (experiment / 'models' / 'net_g_4.pth').is_file()
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()
    assert (experiment / 'training_states' / '4.state').is_file()
    state = torch.load(experiment / 'training_states' / '4.state', weights_only=True)
    assert state['iter'] == 4 and 'grad_scaler' in state and 'rng' in state
    checkpoint = torch.load(experiment / 'models' / 'net_g_4.pth', weights_only=True)
    assert set(checkpoint) == {'params'} and 'conv_first.weight' in checkpoint['params']

    # Resume from a third directory, the root given explicitly; the run continues at iteration 5.
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    result = run_cli(['train', '-opt', str(option_file), '--auto_resume', '--root', str(toy_root),
                      '--force_yml', 'train:total_iter=6'], cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'Resuming training from epoch' in log and 'iter: 4.' in log
    assert 'Start training from epoch: ' in log and 'iter: 4\n' in log
    assert (experiment / 'models' / 'net_g_6.pth').is_file()
    assert not list((toy_root / 'experiments').glob('toy_archived_*'))
    assert not (elsewhere / 'experiments').exists()


def test_root_option_resolves_relative_paths(tmp_path, toy_root):
    option_file = write_options(tmp_path / 'toy.yml', tiny_restoration_options('rooted', total_iter=2))
    result = run_cli(['train', '-opt', str(option_file), '--root', str(toy_root)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (toy_root / 'experiments' / 'rooted' / 'models' / 'net_g_2.pth').is_file()
    missing = run_cli(['train', '-opt', str(option_file)], cwd=tmp_path)
    assert missing.returncode != 0
    assert str(tmp_path / 'data' / 'gt') in missing.stderr


def test_batched_evaluation_is_refused_for_models_that_read_one_image(tmp_path, toy_root):
    options = tiny_restoration_options('batched')
    options['model_type'] = 'SRModel'  # BasicSR's own model reads the first image of a validation batch only
    options['train'].pop('grad_clip')  # an option of our models, which SRModel does not read
    options['datasets']['val']['batch_size_per_gpu'] = 4
    option_file = write_options(tmp_path / 'batched.yml', options)
    result = run_cli(['train', '-opt', str(option_file)], cwd=toy_root)
    assert result.returncode == 2
    assert 'basicsr train: error: datasets.val.batch_size_per_gpu: SRModel validates one image at a time' \
        in result.stderr
    assert not (toy_root / 'experiments' / 'batched').exists()


def test_test_command_writes_results(tmp_path, toy_root):
    option_file = write_options(tmp_path / 'train.yml', tiny_restoration_options('to_test', total_iter=2))
    assert run_cli(['train', '-opt', str(option_file)], cwd=toy_root).returncode == 0
    options = tiny_restoration_options('toy_test')
    options['datasets'] = {'test_1': options['datasets']['val']}
    options['path'] = {'pretrain_network_g': 'experiments/to_test/models/net_g_latest.pth', 'strict_load_g': True}
    options['val']['suffix'] = None
    del options['train']
    test_file = write_options(tmp_path / 'test.yml', options)
    result = run_cli(['test', '-opt', str(test_file)], cwd=toy_root)
    assert result.returncode == 0, result.stderr[-3000:]
    images = sorted((toy_root / 'results' / 'toy_test' / 'visualization' / 'toy_val').glob('*.png'))
    assert len(images) == 12 and len([path for path in images if path.stem.endswith('_grid')]) == 6
    assert '# psnr:' in result.stdout + result.stderr


def test_torchrun_two_cpu_processes_stay_in_sync(tmp_path, toy_root):
    option_file = write_options(tmp_path / 'ddp.yml', tiny_restoration_options('ddp', total_iter=3, save_every=3))
    result, ranks = run_torchrun(['train', '-opt', str(option_file), '--launcher', 'pytorch'], toy_root, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    saved = torch.load(toy_root / 'experiments' / 'ddp' / 'models' / 'net_g_3.pth', weights_only=True)['params']
    for key, value in ranks[0]['net_g'].items():
        assert torch.equal(value, ranks[1]['net_g'][key]), key
        assert torch.equal(value, saved[key]), key
    assert 'World size (gpu number): 2' in result.stdout + result.stderr


def test_both_local_rank_spellings_are_accepted():
    from restorevar_plugin.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(['train', '-opt', 'x.yml', '--local-rank=1']).local_rank == 1
    assert parser.parse_args(['train', '-opt', 'x.yml', '--local_rank', '2']).local_rank == 2
    args = parser.parse_args(['train', '-opt', 'x.yml', '--launcher', 'slurm', '--auto_resume', '--debug',
                              '--force_yml', 'train:total_iter=3', 'logger:print_freq=1'])
    assert (args.launcher, args.auto_resume, args.debug) == ('slurm', True, True)
    assert args.force_yml == ['train:total_iter=3', 'logger:print_freq=1']
