"""The checkpoint package: every layout read into the same state dict, one loading path, one facts table."""
import logging

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from restorevar_plugin.checkpoints import (
    CHECKPOINTS,
    CheckpointError,
    detect_layout,
    load_network,
    load_state_dict,
    resolve_checkpoint,
)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def reference_state():
    return {key: value.clone() + 1 for key, value in small_net().state_dict().items()}


def prefixed(state, prefix):
    return {prefix + key: value for key, value in state.items()}


@pytest.mark.parametrize('layout, wrap', [
    ('flat', lambda state: state),
    ('flat', lambda state: prefixed(state, 'module.')),
    ('basicsr', lambda state: {'params': state, 'params_ema': {k: v * 0 for k, v in state.items()}}),
    ('basicsr', lambda state: {'params': prefixed(state, 'module.')}),
    ('lightning', lambda state: {'state_dict': prefixed(state, 'net.'), 'epoch': 3, 'global_step': 10}),
    ('var_trainer', lambda state: {'trainer': {'var_wo_ddp': state, 'var_opt': {}}, 'epoch': 1}),
])
def test_every_layout_gives_the_same_state_dict(tmp_path, layout, wrap):
    state = reference_state()
    torch.save(wrap(state), tmp_path / 'file.pth')
    loaded, detected = load_state_dict(tmp_path / 'file.pth')
    assert detected == layout
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_params_ema_is_chosen_and_falls_back_to_params(tmp_path):
    state = reference_state()
    ema = {key: value * 2 for key, value in state.items()}
    torch.save({'params': state, 'params_ema': ema}, tmp_path / 'both.pth')
    torch.save({'params': state}, tmp_path / 'params_only.pth')
    loaded, _ = load_state_dict(tmp_path / 'both.pth', param_key='params_ema')
    assert all(torch.equal(loaded[k], ema[k]) for k in ema)
    loaded, _ = load_state_dict(tmp_path / 'params_only.pth', param_key='params_ema')
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_lightning_checkpoint_keeps_nested_modules_such_as_awracle_clip(tmp_path):
    state = {'net.clip.visual.proj': torch.ones(2, 2), 'net.encoder.weight': torch.zeros(3)}
    torch.save({'state_dict': state, 'optimizer_states': []}, tmp_path / 'best.ckpt')
    loaded, layout = load_state_dict(tmp_path / 'best.ckpt')
    assert layout == 'lightning' and sorted(loaded) == ['clip.visual.proj', 'encoder.weight']


def test_safetensors_files_are_flat(tmp_path):
    state = {key: value.contiguous() for key, value in reference_state().items()}
    save_file(state, str(tmp_path / 'file.safetensors'))
    loaded, layout = load_state_dict(tmp_path / 'file.safetensors')
    assert layout == 'flat' and all(torch.equal(loaded[k], state[k]) for k in state)


def test_unknown_layouts_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(ValueError, match='unrecognised checkpoint layout'):
        detect_layout({'weights': [1, 2]})
    with pytest.raises(TypeError, match='dict-like'):
        detect_layout([torch.zeros(1)])
    (tmp_path / 'broken.pth').write_bytes(b'not a torch file')
    with pytest.raises(ValueError, match='broken.pth'):
        load_state_dict(tmp_path / 'broken.pth')


def test_load_network_strict_loads_exactly_and_names_differences(tmp_path, basicsr_log):
    state = reference_state()
    torch.save({'params': state}, tmp_path / 'net.pth')
    net = small_net()
    report = load_network(net, tmp_path / 'net.pth')
    assert report['layout'] == 'basicsr' and report['loaded'] == len(state)
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in state)
    assert any('basicsr layout' in record.getMessage() for record in basicsr_log)
    state.pop('2.bias')
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointError, match=r'partial.pth does not fit .*: 1 keys missing from the file '
                       r'\(first: 2.bias\)'):
        load_network(small_net(), tmp_path / 'partial.pth')


def test_load_network_non_strict_loads_what_matches_and_logs_the_rest(tmp_path, basicsr_log):
    state = reference_state()
    state.pop('2.bias')
    state['0.weight'] = torch.zeros(4, 3, 5, 5)
    state['extra'] = torch.zeros(1)
    torch.save(state, tmp_path / 'other.pth')
    net = small_net()
    before = {key: value.clone() for key, value in net.state_dict().items()}
    report = load_network(net, tmp_path / 'other.pth', strict=False)
    assert report['missing'] == ['2.bias'] and report['unexpected'] == ['extra'] and report['reshaped'] == ['0.weight']
    after = net.state_dict()
    assert torch.equal(after['0.weight'], before['0.weight']) and torch.equal(after['2.bias'], before['2.bias'])
    assert torch.equal(after['2.weight'], state['2.weight'])
    warnings = [record.getMessage() for record in basicsr_log if record.levelno == logging.WARNING]
    assert any('2.bias' in message for message in warnings) and any('extra' in message for message in warnings)


@pytest.mark.parametrize('key', sorted(CHECKPOINTS))
def test_a_missing_published_file_says_where_to_get_it(tmp_path, key):
    info = CHECKPOINTS[key]
    with pytest.raises(FileNotFoundError) as error:
        resolve_checkpoint(info.filename, root=tmp_path)
    message = str(error.value)
    assert str(tmp_path / info.filename) in message and info.url in message and info.source in message
    assert list(tmp_path.iterdir()) == []


def test_table_rows_are_complete():
    layouts = {'flat', 'basicsr', 'lightning', 'var_trainer', 'torchscript', 'library'}
    for key, info in CHECKPOINTS.items():
        assert info.layout in layouts, key
        assert info.filename and info.description and info.source and info.url and info.licence and info.arch, key
        assert (info.hub_subdir is None) == (info.option is None), key
    assert CHECKPOINTS['promptir'].filename == 'model.ckpt' and CHECKPOINTS['promptir'].layout == 'lightning'
    assert 'va1shn9v/PromptIR' in CHECKPOINTS['promptir'].source and CHECKPOINTS['promptir'].arch == 'PromptIR'
    assert CHECKPOINTS['awracle'].filename == 'best.ckpt' and CHECKPOINTS['awracle'].arch == 'AWRaCLe'
