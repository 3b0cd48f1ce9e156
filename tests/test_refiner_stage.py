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


def test_image_loss_is_the_l1_of_the_decoded_refined_latent_and_trains_only_the_refiner(tmp_path):
    opt = tiny_options('restorevar_stage3.yml', tmp_path)
    opt['train']['image_opt'] = {'type': 'L1Loss', 'loss_weight': 0.5}
    model = build_model(opt)
    model.feed_data(fixed_batch(opt, count=2))
    with torch.no_grad():
        cond = model.net_vqvae.encode_features(model.lq)
        target = model.net_vqvae.encode_latent(model.gt).flatten(2).transpose(1, 2)
        generated = model.stage.generate(cond)
        refined = model.net_refiner(generated.f_hat.flatten(2).transpose(1, 2), generated.last_hidden)
        latent = refined.transpose(1, 2).reshape(generated.f_hat.shape)
        expected_image = 0.5 * (model.net_vqvae.decode_latent(latent) - model.gt).abs().mean()
        expected_pix = (refined - target).abs().mean() * opt['train']['pixel_opt'].get('loss_weight', 1.0)
    vqvae_before = {key: value.clone() for key, value in model.net_vqvae.state_dict().items()}
    refiner_before = {key: value.clone() for key, value in model.net_refiner.state_dict().items()}
    log = model.stage.optimize(1)
    torch.testing.assert_close(log['l_image'], expected_image, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log['l_pix'], expected_pix, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(vqvae_before[key], value) for key, value in model.net_vqvae.state_dict().items())
    assert any(not torch.equal(refiner_before[key], value) for key, value in model.net_refiner.state_dict().items())
    assert not any(param.requires_grad for param in model.net_vqvae.parameters())


def test_without_image_opt_only_the_latent_loss_is_logged(tmp_path):
    opt = tiny_options('restorevar_stage3.yml', tmp_path)
    model = build_model(opt)
    model.feed_data(fixed_batch(opt, count=2))
    log = model.stage.optimize(1)
    assert 'l_pix' in log and 'l_image' not in log
