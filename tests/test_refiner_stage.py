"""Refiner stage: the frozen transformer generates in train mode (DropPath active) only with generate_in_train_mode."""
import pytest
import torch
from basicsr.models import build_model

from helpers.restorevar import fixed_batch, tiny_options


def stage_model(tmp_path, train_mode, drop_path_rate):
    opt = tiny_options('restorevar_stage3.yml', tmp_path)
    opt['network_g']['drop_path_rate'] = drop_path_rate
    opt['train']['generate_in_train_mode'] = train_mode
    return opt, build_model(opt)


def two_generations(model, opt):
    torch.manual_seed(0)
    model.feed_data(fixed_batch(opt, count=2))
    cond = model.net_vqvae.encode_features(model.lq)
    return model.stage.generate(cond), model.stage.generate(cond)


@pytest.mark.parametrize('train_mode, drop_path_rate, equal', [
    (True, 0.5, False),   # DropPath active: the generation is stochastic, as in the official stage 3
    (False, 0.5, True),   # eval mode: deterministic greedy decoding
    (True, 0.0, True),    # train mode without stochastic depth changes nothing
])
def test_generation_mode_decides_whether_droppath_acts(tmp_path, train_mode, drop_path_rate, equal):
    opt, model = stage_model(tmp_path, train_mode, drop_path_rate)
    first, second = two_generations(model, opt)
    assert torch.equal(first.last_hidden, second.last_hidden) is equal
    assert model.net_g.training is train_mode
    if equal:
        assert torch.equal(first.f_hat, second.f_hat)


def test_train_mode_generation_keeps_the_transformer_frozen(tmp_path):
    opt, model = stage_model(tmp_path, True, 0.5)
    before = {key: value.clone() for key, value in model.net_g.state_dict().items()}
    model.feed_data(fixed_batch(opt, count=2))
    model.optimize_parameters(1)
    assert all(torch.equal(before[key], value) for key, value in model.net_g.state_dict().items())
    assert not any(param.requires_grad for param in model.net_g.parameters())


def test_generate_in_train_mode_must_be_a_boolean(tmp_path):
    with pytest.raises(ValueError, match="train.generate_in_train_mode must be true or false; got 'yes'"):
        stage_model(tmp_path, 'yes', 0.5)
