"""The retained CPU heap of inference (``val.retain_cpu_memory``): where glibc puts large blocks, and the
settings put back after the scope."""
import ctypes
import os
from pathlib import Path

import pytest
import torch

from helpers.restorevar import tiny_test_model
from restorevar_plugin.models.cpu_heap import glibc, retained_cpu_heap
from restorevar_plugin.models.inference_options import retain_cpu_memory_requested

needs_glibc = pytest.mark.skipif(glibc() is None or not hasattr(glibc(), 'mallinfo2'),
                                 reason='the retained heap is a glibc setting (mallinfo2: glibc >= 2.33)')
MIN_BLOCK_BYTES = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


def mallinfo2():
    """glibc's allocator statistics now (``mallinfo2``)."""
    libc = glibc()
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()


def resident_bytes():
    """The process's resident memory (``/proc/self/statm``), in bytes."""
    return int(Path('/proc/self/statm').read_text().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def new_block_is_mmapped():
    """Whether glibc serves a fresh large block with its own mmap (True) or from its heap (False).

    The block is larger than all free heap memory (``fordblks``) by 64 MiB, so it cannot be served from a free
    chunk that an earlier inference in this process left in the heap (a freed feature map below a block that
    outlived its scope): glibc looks at the mmap settings only when no free chunk fits. ``torch.empty`` leaves
    its pages untouched, so the probe costs address space, not memory.
    """
    before = mallinfo2()
    size = before.fordblks + MIN_BLOCK_BYTES
    block = torch.empty(size, dtype=torch.uint8)
    grown = mallinfo2().hblkhd - before.hblkhd
    del block
    assert grown == 0 or grown >= size, f'{grown} bytes mmapped for a {size}-byte block'
    return grown >= size


@needs_glibc
def test_large_blocks_come_from_the_heap_only_inside_the_scope():
    assert new_block_is_mmapped()
    with retained_cpu_heap(True):
        assert not new_block_is_mmapped()
    assert new_block_is_mmapped()


@needs_glibc
def test_disabled_scope_touches_nothing():
    with retained_cpu_heap(False):
        assert new_block_is_mmapped()


@needs_glibc
def test_nested_scope_leaves_the_outer_one_in_charge():
    with retained_cpu_heap(True):
        with retained_cpu_heap(True):
            pass
        assert not new_block_is_mmapped()
    assert new_block_is_mmapped()


@needs_glibc
def test_settings_are_put_back_when_the_run_fails():
    with pytest.raises(RuntimeError, match='inside'):
        with retained_cpu_heap(True):
            raise RuntimeError('inside')
    assert new_block_is_mmapped()


@needs_glibc
def test_freed_heap_below_a_survivor_is_returned_and_large_blocks_are_mmapped_again():
    size = 2 * MIN_BLOCK_BYTES
    with retained_cpu_heap(True):
        freed = torch.ones(size, dtype=torch.uint8)  # its pages touched
        # larger than all free heap memory, so from the heap top, above the freed block
        survivor = torch.empty(mallinfo2().fordblks + 2**20, dtype=torch.uint8)
        del freed
        resident_in_scope = resident_bytes()
    assert resident_in_scope - resident_bytes() >= 0.9 * size  # malloc_trim returned the freed pages
    assert mallinfo2().fordblks >= size  # while the freed block is still a heap chunk
    assert new_block_is_mmapped()
    del survivor


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
