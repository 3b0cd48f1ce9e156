"""The retained CPU heap of inference (``val.retain_cpu_memory``): where glibc puts large blocks, and the
settings put back after the scope."""
import ctypes

import pytest
import torch

from helpers.restorevar import tiny_test_model
from restorevar_plugin.models.cpu_heap import glibc, retained_cpu_heap
from restorevar_plugin.models.inference_options import retain_cpu_memory_requested

needs_glibc = pytest.mark.skipif(glibc() is None or not hasattr(glibc(), 'mallinfo2'),
                                 reason='the retained heap is a glibc setting (mallinfo2: glibc >= 2.33)')
BLOCK_FLOATS = 16 * 2**20  # 64 MiB: above glibc's largest mmap threshold (32 MiB)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


def mmapped_bytes_of_new_block():
    """Bytes glibc has in mmap-ed blocks while a fresh 64 MiB tensor is alive, minus those before it."""
    libc = glibc()
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblkhd
    block = torch.ones(BLOCK_FLOATS)
    grown = libc.mallinfo2().hblkhd - before
    del block
    return grown


@needs_glibc
def test_large_blocks_come_from_the_heap_only_inside_the_scope():
    assert mmapped_bytes_of_new_block() >= BLOCK_FLOATS * 4
    with retained_cpu_heap(True):
        assert mmapped_bytes_of_new_block() == 0
    assert mmapped_bytes_of_new_block() >= BLOCK_FLOATS * 4


@needs_glibc
def test_disabled_scope_touches_nothing():
    with retained_cpu_heap(False):
        assert mmapped_bytes_of_new_block() >= BLOCK_FLOATS * 4


@needs_glibc
def test_nested_scope_leaves_the_outer_one_in_charge():
    with retained_cpu_heap(True):
        with retained_cpu_heap(True):
            pass
        assert mmapped_bytes_of_new_block() == 0
    assert mmapped_bytes_of_new_block() >= BLOCK_FLOATS * 4


@needs_glibc
def test_settings_are_put_back_when_the_run_fails():
    with pytest.raises(RuntimeError, match='inside'):
        with retained_cpu_heap(True):
            raise RuntimeError('inside')
    assert mmapped_bytes_of_new_block() >= BLOCK_FLOATS * 4


def test_retain_cpu_memory_option_is_checked():
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert retain_cpu_memory_requested({}, cpu) is True
    assert retain_cpu_memory_requested({'retain_cpu_memory': False}, cpu) is False
    assert retain_cpu_memory_requested({}, cuda) is False
    with pytest.raises(ValueError, match='val.retain_cpu_memory must be true or false'):
        retain_cpu_memory_requested({'retain_cpu_memory': 'yes'}, cpu)


@torch.no_grad()
def test_restore_runs_in_the_scope_its_option_asks_for(tmp_path, monkeypatch):
    import restorevar_plugin.models.plugin_base_model as plugin_base_model

    entered = []

    def recording_scope(enabled):
        entered.append(enabled)
        return retained_cpu_heap(enabled)

    monkeypatch.setattr(plugin_base_model, 'retained_cpu_heap', recording_scope)
    model = tiny_test_model(tmp_path)
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    retained = model.restore(img)
    model.opt['val']['retain_cpu_memory'] = False
    released = model.restore(img)
    assert entered == [True, False]
    assert torch.equal(retained, released)
