"""``val.tf32``: TF32 flags set only for the duration of a GPU validation, restored afterwards, off by default."""
import copy

import pytest
import torch
from basicsr.models import build_model

from helpers.runs import tiny_restoration_options
from restorevar_plugin.models.matmul_precision import (
    set_tf32_flags,
    tf32_flags,
    tf32_scope,
    validation_uses_tf32,
)

DEFAULT_OFF = (False, False, 'highest')


@pytest.fixture
def restore_flags():
    """Start every test with TF32 off and leave the process as it was found."""
    saved = tf32_flags()
    set_tf32_flags(DEFAULT_OFF)
    yield
    set_tf32_flags(saved)


def build(tmp_path, val_overrides):
    opt = tiny_restoration_options('tf32')
    opt['val'].update(val_overrides)
    opt.update(is_train=True, dist=False, num_gpu=0, rank=0, world_size=1)
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'))
    return build_model(copy.deepcopy(opt))


def test_scope_sets_the_official_flags_and_restores_them(restore_flags):
    assert tf32_flags() == DEFAULT_OFF
    with tf32_scope(True):
        assert tf32_flags() == (True, True, 'high')
    assert tf32_flags() == DEFAULT_OFF
    torch.backends.cudnn.allow_tf32 = True  # a user's own mixed setting comes back exactly
    with pytest.raises(RuntimeError, match='boom'):
        with tf32_scope(True):
            raise RuntimeError('boom')
    assert tf32_flags() == (False, True, 'highest')
    with tf32_scope(False):
        assert tf32_flags() == (False, True, 'highest')


def test_validation_applies_tf32_only_on_gpu_and_only_while_it_runs(tmp_path, restore_flags):
    seen = []

    def record(*args):
        seen.append(tf32_flags())

    model = build(tmp_path, {'tf32': True})
    model.nondist_validation = record
    model.validation(None, 0, None)
    assert seen == [DEFAULT_OFF]  # CPU: val.tf32 has no effect
    model.validation_tf32 = True  # what a CUDA device with val.tf32 gives (see the next test)
    model.validation(None, 0, None)
    assert seen[-1] == (True, True, 'high') and tf32_flags() == DEFAULT_OFF
    default = build(tmp_path, {})
    assert default.validation_tf32 is False


def test_tf32_option_needs_a_gpu_and_a_boolean(tmp_path, restore_flags):
    assert validation_uses_tf32({'tf32': True}, torch.device('cuda', 0))
    assert not validation_uses_tf32({'tf32': True}, torch.device('cpu'))
    assert not validation_uses_tf32({}, torch.device('cuda', 0)) and not validation_uses_tf32(None, torch.device('cpu'))
    with pytest.raises(ValueError, match="val.tf32 must be true or false; got 'yes'"):
        build(tmp_path, {'tf32': 'yes'})
