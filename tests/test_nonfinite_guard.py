"""``train.nonfinite``: non-finite steps are skipped and counted, or stop the run naming the iteration and the batch;
non-finite weights are never saved."""
import pytest
import torch
from basicsr.models import build_model

from helpers.runs import run_cli, tiny_restoration_options, write_options
from restorevar_plugin.models.plugin_base_model import NonFiniteTrainingError


def tiny_model(tmp_path, **train_overrides):
    opt = tiny_restoration_options('nonfinite', **train_overrides)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    for key in ('models', 'training_states', 'visualization'):
        opt['path'][key] = str(tmp_path / key)
    torch.manual_seed(0)
    return build_model(opt)


def batch(nan=False):
    torch.manual_seed(1)
    lq = torch.rand(2, 3, 16, 16)
    if nan:
        lq[0, 0, 0, 0] = float('nan')
    return {'lq': lq, 'gt': torch.rand(2, 3, 16, 16), 'lq_path': ['/data/lq/0001.png', '/data/lq/0002.png']}


def step(model, iteration, data):
    model.update_learning_rate(iteration)
    model.feed_data(data)
    model.optimize_parameters(iteration)


def weights(model):
    return {key: value.clone() for key, value in model.net_g.state_dict().items()}


def test_skipped_steps_leave_weights_untouched_and_are_counted(tmp_path, basicsr_log):  # noqa: F811
    model = tiny_model(tmp_path)
    before = weights(model)
    for iteration in (1, 2, 3):
        step(model, iteration, batch(nan=True))
    assert all(torch.equal(value, model.net_g.state_dict()[key]) for key, value in before.items())
    assert model.nonfinite_skips == 3 and model.consecutive_skips == {0: 3}
    assert ('iteration 3: non-finite loss (l_pix=nan) on the batch 0001.png, 0002.png; step skipped '
            '(3 skipped so far, 3 in a row)') in [record.getMessage() for record in basicsr_log]
    step(model, 4, batch())
    assert model.consecutive_skips == {0: 0} and model.nonfinite_skips == 3
    assert any(not torch.equal(value, model.net_g.state_dict()[key]) for key, value in before.items())


def test_stop_mode_and_the_consecutive_limit_name_iteration_and_batch(tmp_path):
    model = tiny_model(tmp_path, nonfinite='stop')
    step(model, 1, batch())
    with pytest.raises(NonFiniteTrainingError, match=r'^iteration 2: non-finite loss \(l_pix=nan\) on the batch '
                       r'0001.png, 0002.png; stopping \(train.nonfinite: stop\)$'):
        step(model, 2, batch(nan=True))

    model = tiny_model(tmp_path, nonfinite_max_skips=2)
    step(model, 1, batch(nan=True))
    with pytest.raises(NonFiniteTrainingError, match='iteration 2: .* stopping after 2 consecutive skipped steps'):
        step(model, 2, batch(nan=True))

    with pytest.raises(ValueError, match="train.nonfinite must be skip or stop; got 'ignore'"):
        tiny_model(tmp_path, nonfinite='ignore')


def test_non_finite_weights_are_never_saved(tmp_path):
    model = tiny_model(tmp_path)
    with torch.no_grad():
        model.net_g.conv_first.weight[0, 0, 0, 0] = float('inf')
    with pytest.raises(NonFiniteTrainingError, match=r'net_g \(params\) has non-finite weights \(1 tensors, first: '
                       r'conv_first.weight\); not saving net_g_best.pth'):
        model.save_network(model.net_g, 'net_g', 'best')
    assert not (tmp_path / 'models').exists() or not list((tmp_path / 'models').iterdir())


def test_huge_learning_rate_stops_the_run_without_saving_non_finite_weights(tmp_path, toy_root):
    options = tiny_restoration_options('lr1e3', total_iter=40, save_every=40, grad_clip=None)
    options['train']['optim_g']['lr'] = 1e3
    result = run_cli(['train', '-opt', str(write_options(tmp_path / 'lr.yml', options))], cwd=toy_root)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('basicsr train: error: iteration ')
    assert 'stopping after 10 consecutive skipped steps' in error
    assert '.png' in error
    for path in (toy_root / 'experiments' / 'lr1e3' / 'models').glob('*.pth'):
        for value in torch.load(path, weights_only=True)['params'].values():
            assert torch.isfinite(value).all(), path
