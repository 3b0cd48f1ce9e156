"""RestoreVARModel: each training stage learns, freezes what it must, saves what it trains, and the stages chain."""
import copy

import pytest
import torch
from basicsr.metrics import calculate_psnr
from basicsr.models import build_model
from basicsr.utils import tensor2img

from helpers.references import fake_base_var_state
from helpers.restorevar import DEMO, SIZE, fixed_batch, synthetic, tiny_options
from helpers.runs import run_cli, run_torchrun
from restorevar_plugin.evaluation import read_metrics_csv
from restorevar_plugin.models.plugin_base_model import PluginBaseModel

pytest_plugins = ['helpers.pretrained']


def train_on(model, batch, iterations):
    """``iterations`` steps on one batch; returns the log dict of every step."""
    logs = []
    for iteration in range(1, iterations + 1):
        model.update_learning_rate(iteration, warmup_iter=-1)
        model.feed_data(batch)
        model.optimize_parameters(iteration)
        logs.append(dict(model.log_dict))
    return logs


def snapshot(module):
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def changed_keys(before, module):
    return {key for key, value in module.state_dict().items() if not torch.equal(before[key], value)}


def test_tokenizer_training_improves_held_out_reconstruction(tmp_path):
    torch.manual_seed(0)
    opt = tiny_options('restorevar_tokenizer.yml', tmp_path)
    model = build_model(opt)
    held_out = torch.stack([item['gt'] for item in synthetic(opt, 'val')])  # chelsea and coffee, never trained on

    def held_out_psnr():
        reconstruction = (model.reconstruct(held_out * 2 - 1) + 1) / 2
        return sum(calculate_psnr(tensor2img(r), tensor2img(g), 0) for r, g in zip(reconstruction, held_out)) / len(
            held_out)

    before = held_out_psnr()
    loader = torch.utils.data.DataLoader(synthetic(opt, 'train'), batch_size=8, shuffle=True, drop_last=True)
    iteration = 0
    while iteration < 80:
        for batch in loader:
            iteration += 1
            model.update_learning_rate(iteration, warmup_iter=-1)
            model.feed_data(batch)
            model.optimize_parameters(iteration)
            if iteration == 80:
                break
    after = held_out_psnr()
    # measured: about 9.4 dB -> 14.1 dB after 80 iterations
    assert after > before + 3.0, (before, after)
    log = model.log_dict
    assert 1.0 < log['perplexity'] <= 256 and 0 <= log['dead_codes'] <= 256 and 'l_vq' in log


def test_tokenizer_continuous_weight_adds_the_unquantized_reconstruction_loss(tmp_path):
    torch.manual_seed(0)
    opt = tiny_options('restorevar_tokenizer.yml', tmp_path)
    opt['train'].update(continuous_weight=0.5, init_codebook_from_data=False, dead_code_restart=None, grad_clip=None)
    model = build_model(opt)
    batch = fixed_batch(opt, count=4)
    vqvae = copy.deepcopy(model.net_vqvae)
    gt = batch['gt'] * 2 - 1
    with torch.no_grad():
        continuous = vqvae.decoder(vqvae.post_quant_conv(vqvae.encode_latent(gt)))
        quantized, vq = vqvae(gt)
    _, with_continuous = vqvae(gt, decode_continuous=True)
    torch.testing.assert_close(with_continuous['continuous_reconstruction'], continuous)
    assert 'continuous_reconstruction' not in vq
    model.feed_data(batch)
    model.optimize_parameters(1)
    log = model.log_dict
    assert log['l_continuous'] == pytest.approx((continuous - gt).abs().mean().item(), rel=1e-5)
    assert log['l_pix'] == pytest.approx((quantized - gt).abs().mean().item(), rel=1e-5)
    # without the option the term is neither computed nor logged
    opt['train']['continuous_weight'] = 0
    plain = build_model(opt)
    plain.feed_data(batch)
    plain.optimize_parameters(1)
    assert 'l_continuous' not in plain.log_dict


@pytest.mark.parametrize('stage_file, loss_key, iterations', [
    ('restorevar_stage1.yml', 'l_ce', 25),
    ('restorevar_stage2.yml', 'l_pix', 25),
    ('restorevar_stage3.yml', 'l_pix', 25),
])
def test_stage_loss_decreases(tmp_path, stage_file, loss_key, iterations):
    torch.manual_seed(0)
    opt = tiny_options(stage_file, tmp_path)
    opt['train'].update(grad_clip=None, net_d_init_iters=0)
    model = build_model(opt)
    logs = train_on(model, fixed_batch(opt), iterations)
    first = sum(log[loss_key] for log in logs[:3]) / 3
    last = sum(log[loss_key] for log in logs[-3:]) / 3
    assert last < 0.8 * first, [round(log[loss_key], 4) for log in logs]


def test_transformer_stage_logs_token_accuracy(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_options('restorevar_stage1.yml', tmp_path))
    log = train_on(model, fixed_batch(model.opt), 1)[0]
    assert {'l_ce', 'acc', 'acc_first', 'acc_last'} <= set(log)
    assert all(0 <= log[key] <= 100 for key in ('acc', 'acc_first', 'acc_last'))


def test_ema_of_the_trained_network_is_saved_as_params_ema(tmp_path):
    torch.manual_seed(0)
    opt = tiny_options('restorevar_stage3.yml', tmp_path)
    opt['train']['ema_decay'] = 0.5
    model = build_model(opt)
    key = 'proj_in.weight'
    batch = fixed_batch(opt)
    weights = [model.net_refiner.state_dict()[key].clone()]
    for iteration in (1, 2):
        model.feed_data(batch)
        model.optimize_parameters(iteration)
        weights.append(model.net_refiner.state_dict()[key].clone())
    trained, averaged = model.net_refiner.state_dict(), model.net_ema.state_dict()
    # the EMA starts as a copy (w0), then two updates of decay 0.5
    torch.testing.assert_close(averaged[key], 0.25 * weights[0] + 0.25 * weights[1] + 0.5 * weights[2])
    assert not torch.equal(averaged[key], trained[key])
    model.save(0, 2)
    checkpoint = torch.load(tmp_path / 'models' / 'net_refiner_2.pth', weights_only=True)
    assert set(checkpoint) == {'params', 'params_ema'}
    torch.testing.assert_close(checkpoint['params_ema'][key], averaged[key])
    torch.testing.assert_close(checkpoint['params'][key], trained[key])
    assert not (tmp_path / 'models' / 'net_g_2.pth').exists()

    opt['path']['pretrain_network_refiner'] = str(tmp_path / 'models' / 'net_refiner_2.pth')
    resumed = build_model(opt)
    torch.testing.assert_close(resumed.net_ema.state_dict()[key], averaged[key])
    torch.testing.assert_close(resumed.net_refiner.state_dict()[key], trained[key])


def test_refiner_stage_freezes_transformer_and_vqvae(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_options('restorevar_stage3.yml', tmp_path))
    before = {name: snapshot(net) for name, net in model.networks().items()}
    train_on(model, fixed_batch(model.opt), 3)
    assert not changed_keys(before['net_g'], model.net_g)
    assert not changed_keys(before['net_vqvae'], model.net_vqvae)
    assert changed_keys(before['net_refiner'], model.net_refiner)
    assert [group['params'] for group in model.optimizer_g.param_groups]
    optimised = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    assert optimised == {id(p) for p in model.net_refiner.parameters()}


def test_decoder_stage_freezes_encoder_and_quantizer(tmp_path):
    torch.manual_seed(0)
    opt = tiny_options('restorevar_stage2.yml', tmp_path)
    opt['train']['net_d_init_iters'] = 0
    model = build_model(opt)
    before = snapshot(model.net_vqvae)
    discriminator_before = snapshot(model.net_d)
    train_on(model, fixed_batch(opt), 3)
    changed = changed_keys(before, model.net_vqvae)
    assert changed and all(key.startswith(('decoder.', 'post_quant_conv.')) for key in changed)
    assert any(key.startswith('post_quant_conv.') for key in changed)
    assert changed_keys(discriminator_before, model.net_d)
    assert {'l_pix', 'l_ssim', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(model.log_dict)


def test_zero_weight_skips_a_loss_and_missing_discriminator_is_named(tmp_path):
    opt = tiny_options('restorevar_stage2.yml', tmp_path)
    model = build_model(copy.deepcopy(opt))
    assert [key for key in model.stage.objective.losses] == ['l_pix', 'l_ssim']  # perceptual weight 0: not built
    del opt['network_d']
    with pytest.raises(ValueError, match='network_d'):
        build_model(opt)


def test_stage1_initialises_the_transformer_from_a_base_var_file(tmp_path):
    opt = tiny_options('restorevar_stage1.yml', tmp_path)
    reference = build_model(copy.deepcopy(opt)).net_g
    state = fake_base_var_state(reference, levels=10, generator=torch.Generator().manual_seed(3))
    torch.save(state, tmp_path / 'var_tiny.pth')
    opt['path']['pretrain_var'] = str(tmp_path / 'var_tiny.pth')
    model = build_model(opt)
    loaded = model.net_g.state_dict()
    assert torch.equal(loaded['blocks.0.attn.mat_qkv.weight'], state['blocks.0.attn.mat_qkv.weight'])
    assert torch.equal(loaded['head.weight'], state['head.weight'])
    assert float(loaded['blocks.0.cross_attn.gain']) == 0.0  # RestoreVAR-only modules keep their fresh init
    assert model.net_g.training and all(p.requires_grad for p in model.net_g.parameters())
    assert not any(p.requires_grad for p in model.net_vqvae.parameters())


def test_missing_lpips_weights_stop_the_decoder_stage(tmp_path, empty_torch_home, no_network):
    opt = tiny_options('restorevar_stage2.yml', tmp_path)
    opt['train']['perceptual_opt']['loss_weight'] = 1.0
    with pytest.raises(FileNotFoundError, match='alexnet-owt-7be5be79.pth') as error:
        build_model(opt)
    assert str(empty_torch_home) in str(error.value)


def test_lpips_term_trains_with_planted_weights(tmp_path, lpips_home):
    opt = tiny_options('restorevar_stage2.yml', tmp_path)
    opt['train'].update(net_d_init_iters=0)
    opt['train']['perceptual_opt']['loss_weight'] = 1.0
    model = build_model(opt)
    log = train_on(model, fixed_batch(opt), 1)[0]
    assert log['l_percep'] > 0


def test_original_decoder_ablation_and_refiner_switch(tmp_path):
    torch.manual_seed(0)
    opt = tiny_options('restorevar_stage3.yml', tmp_path)
    opt['is_train'] = False
    model = build_model(copy.deepcopy(opt))
    other = build_model(copy.deepcopy(opt)).net_vqvae
    torch.save({'params': other.state_dict()}, tmp_path / 'other_vqvae.pth')
    torch.save({'params': model.net_vqvae.state_dict()}, tmp_path / 'vqvae.pth')
    torch.save({'params': model.net_g.state_dict()}, tmp_path / 'g.pth')
    torch.save({'params': model.net_refiner.state_dict()}, tmp_path / 'refiner.pth')
    opt['path'].update(pretrain_network_vqvae=str(tmp_path / 'vqvae.pth'), pretrain_network_g=str(tmp_path / 'g.pth'),
                       pretrain_network_refiner=str(tmp_path / 'refiner.pth'))
    images = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    full = build_model(copy.deepcopy(opt))
    baseline = full.restore(images)
    torch.testing.assert_close(baseline, model.restore(images))

    with_original_decoder = copy.deepcopy(opt)
    with_original_decoder['path']['pretrain_decoder'] = str(tmp_path / 'other_vqvae.pth')
    ablation = build_model(with_original_decoder)
    vqvae = ablation.net_vqvae
    generated = ablation.net_g.generate(vqvae.encode_features(images), vqvae)
    tokens = ablation.net_refiner(generated.f_hat.flatten(2).transpose(1, 2), generated.last_hidden)
    latent = tokens.transpose(1, 2).reshape(generated.f_hat.shape)
    # restore() decodes through the test-time path (channels-last, the phase-split upsampling): images in [-1, 1]
    # agree to the project's image tolerance, not bit for bit (1.2e-5 seen on an Intel Xeon)
    torch.testing.assert_close(ablation.restore(images), other.decode_latent(latent), atol=1e-4, rtol=0)

    without_refiner = copy.deepcopy(opt)
    without_refiner['val'] = {'use_refiner': False}
    plain = build_model(without_refiner)
    torch.testing.assert_close(plain.restore(images), vqvae.decode_latent(generated.f_hat), atol=1e-4, rtol=0)


def test_unknown_stage_is_named(tmp_path):
    opt = tiny_options('restorevar_stage1.yml', tmp_path)
    opt['train']['stage'] = 'transformers'
    with pytest.raises(ValueError, match="train.stage must be one of transformer, decoder, refiner, tokenizer"):
        build_model(opt)


def test_mixed_precision_only_with_a_gpu(tmp_path):
    assert PluginBaseModel._select_amp_dtype('bf16', on_gpu=True) is torch.bfloat16
    assert PluginBaseModel._select_amp_dtype('fp16', on_gpu=True) is torch.float16
    assert PluginBaseModel._select_amp_dtype('fp16', on_gpu=False) is None
    opt = tiny_options('restorevar_stage1.yml', tmp_path)
    assert opt['train']['amp'] == 'fp16'
    model = build_model(opt)
    assert model.amp_dtype is None and not model.grad_scaler.is_enabled()
    assert next(model.net_g.parameters()).dtype == torch.float32


def test_restore_any_size_returns_the_input_size(tmp_path):
    torch.manual_seed(0)
    opt = tiny_options('restorevar_stage3.yml', tmp_path)
    opt['is_train'] = False
    model = build_model(opt)
    images = torch.rand(2, 3, 45, 70) * 2 - 1
    restored = model.restore_any_size(images)
    assert restored.shape == images.shape and restored.min() >= -1 and restored.max() <= 1
    single = model.restore_any_size(images[1:])
    torch.testing.assert_close(restored[1:], single, atol=1e-5, rtol=1e-5)
    assert model.restore_any_size(images[..., :5, :7]).shape == (2, 3, 5, 7)


def run_stage(stage_file, root, *overrides):
    args = ['train', '-opt', str(DEMO / stage_file), '--force_yml', 'train:total_iter=4',
            'logger:save_checkpoint_freq=2',
            'val:val_freq=4', 'logger:print_freq=1', 'datasets:train:dataset_enlarge_ratio=1', *overrides]
    result = run_cli(args, cwd=root)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


def saved(root, name):
    return sorted(path.name for path in (root / 'experiments' / name / 'models').glob('*.pth'))


def test_demo_stages_chain_and_test_writes_images_and_metrics(tmp_path):
    root = tmp_path
    run_stage('restorevar_tokenizer.yml', root)
    assert 'net_vqvae_latest.pth' in saved(root, 'demo_restorevar_tokenizer')

    run_stage('restorevar_stage1.yml', root, 'train:total_iter=2')
    log = run_stage('restorevar_stage1.yml', root, '--auto_resume')
    assert 'Resuming training from epoch' in log
    assert 'pretrain_network_vqvae: no net_vqvae_2.pth was saved' in log
    assert all(name.startswith('net_g_') for name in saved(root, 'demo_restorevar_stage1'))
    assert {'net_g_4.pth', 'net_g_best.pth', 'net_g_latest.pth'} <= set(saved(root, 'demo_restorevar_stage1'))

    run_stage('restorevar_stage2.yml', root)
    stage2 = saved(root, 'demo_restorevar_stage2')
    assert {name.split('_')[1] for name in stage2} == {'vqvae', 'd'}

    before_refiner = torch.load(root / 'experiments/demo_restorevar_stage2/models/net_vqvae_latest.pth',
                                weights_only=True)['params']
    run_stage('restorevar_stage3.yml', root)
    assert all(name.startswith('net_refiner_') for name in saved(root, 'demo_restorevar_stage3'))
    after_refiner = torch.load(root / 'experiments/demo_restorevar_stage2/models/net_vqvae_latest.pth',
                               weights_only=True)['params']
    assert all(torch.equal(before_refiner[key], after_refiner[key]) for key in before_refiner)

    result = run_cli(['test', '-opt', str(DEMO / 'restorevar_test.yml')], cwd=root)
    assert result.returncode == 0, result.stderr[-4000:]
    results = root / 'results' / 'demo_restorevar_test'
    images = sorted((results / 'visualization' / 'synthetic_val').glob('*.png'))
    assert len([p for p in images if p.stem.endswith('_grid')]) == 10
    assert len([p for p in images if not p.stem.endswith('_grid')]) == 10
    rows = read_metrics_csv(results / 'synthetic_val_metrics.csv')
    assert len(rows) == 11 and rows[-1]['image'] == 'mean'
    psnrs = [float(row['psnr']) for row in rows[:-1]]
    assert float(rows[-1]['psnr']) == pytest.approx(sum(psnrs) / len(psnrs))
    assert 'time per image (ms): encoder' in result.stdout + result.stderr
    assert (results / 'synthetic_val_metrics.md').is_file()

    batched = run_cli(['test', '-opt', str(DEMO / 'restorevar_test.yml'), '--force_yml',
                       'datasets:test_1:batch_size_per_gpu=4', 'name=demo_restorevar_test_batched'], cwd=root)
    assert batched.returncode == 0, batched.stderr[-4000:]
    batched_rows = read_metrics_csv(root / 'results' / 'demo_restorevar_test_batched' / 'synthetic_val_metrics.csv')
    assert [row['image'] for row in batched_rows] == [row['image'] for row in rows]
    for row, batched_row in zip(rows, batched_rows):
        assert float(batched_row['psnr']) == pytest.approx(float(row['psnr']), abs=1e-3)

    bf16 = run_cli(['test', '-opt', str(DEMO / 'restorevar_test.yml'), '--precision', 'bf16', '--force_yml',
                    'name=demo_restorevar_test_bf16'], cwd=root)
    assert bf16.returncode == 0, bf16.stderr[-4000:]
    bf16_rows = read_metrics_csv(root / 'results' / 'demo_restorevar_test_bf16' / 'synthetic_val_metrics.csv')
    assert [row['image'] for row in bf16_rows] == [row['image'] for row in rows]
    assert float(bf16_rows[-1]['psnr']) == pytest.approx(float(rows[-1]['psnr']), abs=1.0)


@pytest.mark.parametrize('stage_file, trained', [
    ('restorevar_tokenizer.yml', ['net_vqvae']),
    ('restorevar_stage2.yml', ['net_vqvae', 'net_d']),
])
def test_stages_stay_in_sync_under_ddp_on_cpu(tmp_path, stage_file, trained):
    args = ['train', '-opt', str(DEMO / stage_file), '--launcher', 'pytorch', '--force_yml', 'train:total_iter=3',
            'logger:save_checkpoint_freq=3', 'val:val_freq=3', 'datasets:train:dataset_enlarge_ratio=1',
            'datasets:train:batch_size_per_gpu=2', 'datasets:train:size=32', 'datasets:val:size=32',
            'network_vqvae:patch_nums=[1,2,4]', 'path:pretrain_network_vqvae=~']
    if stage_file == 'restorevar_stage2.yml':
        args.append('train:net_d_init_iters=0')
    result, ranks = run_torchrun(args, tmp_path, tmp_path, port=29532)
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ranks[0]:
        for key, value in ranks[0][name].items():
            if 'running_' in key or 'num_batches_tracked' in key:
                continue  # BatchNorm statistics: DDP syncs them at the start of each forward, not after the last
            assert torch.equal(value, ranks[1][name][key]), f'{name}.{key} differs between ranks'
    experiment = 'demo_restorevar_tokenizer' if 'tokenizer' in stage_file else 'demo_restorevar_stage2'
    for name in trained:
        saved = torch.load(tmp_path / 'experiments' / experiment / 'models' / f'{name}_3.pth', weights_only=True)
        for key, value in saved['params'].items():
            assert torch.equal(value, ranks[0][name][key]), f'{name}.{key} was not saved as trained'
