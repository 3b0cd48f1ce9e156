"""Optimizers, parameter groups, schedulers, clipping, AMP selection and resume state of PluginBaseModel."""
import copy
import math

import pytest
import torch
from basicsr.models import build_model

from helpers.runs import tiny_restoration_options
from restorevar_plugin.models.lr_schedulers import (
    ConstantLinearDecayLR,
)
from restorevar_plugin.models.plugin_base_model import param_groups


def build(tmp_path, **train_overrides):
    """A RestorationModel on CPU from the tiny option dict (no pipeline)."""
    opt = tiny_restoration_options('unit', **train_overrides)
    opt.update(is_train=True, dist=False, num_gpu=0, rank=0, world_size=1)
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'))
    return build_model(copy.deepcopy(opt))


def lr_at(model, iteration, warmup_iter=-1):
    model.update_learning_rate(iteration, warmup_iter=warmup_iter)
    return model.get_current_learning_rate()[0]


def test_adamw_warmup_cosine_learning_rates(tmp_path):
    model = build(tmp_path, scheduler={'type': 'LinearWarmupCosineLR', 'warmup_iter': 5, 'max_iter': 25,
                                       'warmup_start_lr': 0.0, 'eta_min': 1e-5})
    assert isinstance(model.optimizer_g, torch.optim.AdamW)
    seen = {iteration: lr_at(model, iteration) for iteration in range(1, 31)}
    peak = 1e-3
    # iteration i uses step i-1: linear ramp over steps 0..4 reaching the peak at step 4
    assert seen[1] == pytest.approx(0.0)
    assert seen[3] == pytest.approx(peak * 2 / 4)
    assert seen[5] == pytest.approx(peak)
    assert seen[15] == pytest.approx(1e-5 + 0.5 * (peak - 1e-5) * (1 + math.cos(math.pi * 9 / 20)))
    assert seen[26] == pytest.approx(1e-5)
    assert seen[30] == pytest.approx(1e-5)


def test_constant_then_linear_decay_matches_var_lin0():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-4)
    scheduler = ConstantLinearDecayLR(optimizer, total_iter=101, warmup_iter=10, warmup_start_ratio=0.5)
    factors = [scheduler.factor(step) for step in range(101)]
    assert factors[0] == pytest.approx(0.5) and factors[5] == pytest.approx(0.75)
    # post-warm-up progress p = (t - 10) / 90: constant while p < 0.05, i.e. t <= 14
    assert factors[10] == factors[14] == 1.0
    assert factors[15] < 1.0
    assert factors[55] == pytest.approx(0.01 + 0.99 * (1 - 0.5) / 0.95)
    assert factors[100] == pytest.approx(0.01)
    for step in range(1, 30):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]['lr'] == pytest.approx(1e-4 * factors[step])
    with pytest.raises(ValueError, match='warmup_iter'):
        ConstantLinearDecayLR(optimizer, total_iter=10, warmup_iter=10)


def test_no_decay_groups_follow_var_rule():
    net = torch.nn.Module()
    net.linear = torch.nn.Linear(4, 4)
    net.lvl_embed = torch.nn.Embedding(3, 4)
    net.gain = torch.nn.Parameter(torch.zeros(()))
    net.norm_weight = torch.nn.Parameter(torch.ones(4))
    groups = param_groups(net.named_parameters(), 0.05, ['lvl_embed'], lr_mult={'linear': 0.1})
    by_name = {name: (group['weight_decay'], group['lr_mult']) for group in groups for name in group['names']}
    assert by_name == {
        'linear.weight': (0.05, 0.1),
        'linear.bias': (0.0, 0.1),
        'lvl_embed.weight': (0.0, 1.0),
        'gain': (0.05, 1.0),  # 0-D scalars keep the decay, as in the reference
        'norm_weight': (0.0, 1.0),
    }
    assert len(param_groups(net.named_parameters(), 0.05)) == 1


def test_unknown_optimizer_and_scheduler_are_named(tmp_path):
    with pytest.raises(ValueError, match="train.optim_g.type: 'AdamX'"):
        build(tmp_path, optim_g={'type': 'AdamX', 'lr': 1e-3})
    with pytest.raises(ValueError, match="unknown scheduler 'Cosine'"):
        build(tmp_path, scheduler={'type': 'Cosine'})


def test_gradient_clipping_bounds_the_update(tmp_path):
    model = build(tmp_path, grad_clip=1e-3)
    model.feed_data({'lq': torch.rand(2, 3, 32, 32), 'gt': torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    total = torch.norm(torch.stack([p.grad.norm() for p in model.net_g.parameters()]))
    assert model.log_dict['grad_norm'] > 1e-3
    assert float(total) == pytest.approx(1e-3, rel=1e-3)


def test_amp_is_fp32_on_cpu(tmp_path):
    model = build(tmp_path, amp='fp16')
    assert model.amp_dtype is None and not model.grad_scaler.is_enabled()
    with pytest.raises(ValueError, match='train.amp must be one of'):
        build(tmp_path, amp='fp8')


def test_training_state_round_trip_restores_scaler_and_schedule(tmp_path):
    model = build(tmp_path)
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 5)
    for iteration in range(1, 4):
        lr_at(model, iteration)
    model.save_training_state(epoch=0, current_iter=3)
    state = torch.load(tmp_path / 'states' / '3.state', weights_only=True)
    assert state['grad_scaler']['scale'] == 2.0 ** 5

    resumed = build(tmp_path)
    resumed.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1.0)
    resumed.resume_training(state)
    assert resumed.grad_scaler.get_scale() == 2.0 ** 5
    assert lr_at(resumed, 4) == pytest.approx(lr_at(model, 4))
    assert not list((tmp_path / 'states').glob('.*tmp'))


def test_loss_scale_is_capped():
    from restorevar_plugin.models.plugin_base_model import CappedGradScaler

    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = CappedGradScaler('cpu', init_scale=1024.0, growth_interval=1, max_scale=4096.0)
    scales = []
    for _ in range(5):
        optimizer.zero_grad()
        scaler.scale(param.sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        scales.append(scaler.get_scale())
    assert scales == [2048.0, 4096.0, 4096.0, 4096.0, 4096.0]


def test_test_pads_to_the_size_multiple_and_crops_back(tmp_path):
    model = build(tmp_path)
    model.opt['val']['size_multiple'] = 8
    model.feed_data({'lq': torch.rand(1, 3, 45, 70)})
    model.test()
    assert model.output.shape == (1, 3, 45, 70)
    padded = torch.nn.functional.pad(model.lq, (0, 2, 0, 3), mode='reflect')
    with torch.no_grad():
        torch.testing.assert_close(model.output, model.net_g(padded)[..., :45, :70])
