"""Freed CPU memory kept for reuse during inference (``val.retain_cpu_memory``), in a scope.

glibc serves an allocation above its mmap threshold (at most 32 MiB) with fresh ``mmap`` pages and unmaps
them on ``free``. The VQVAE's convolutions at 512 px allocate and free feature maps of 80-170 MB, so every one
of them is page-faulted and zeroed by the kernel again: on a 2-core Intel Xeon the encoder and the decoder
each took 0.6-0.9 million minor faults and about 1 s of system time per image. Inside
:func:`retained_cpu_heap` glibc serves them from its heap (``M_MMAP_MAX = 0``) and keeps the freed heap
mapped (``M_TRIM_THRESHOLD``), so later feature maps reuse pages that are already there. Called repeatedly in
one scope, the encoder took 2.5-2.6 s instead of 2.9-3.3 s and the decoder 4.0-4.1 s instead of 4.7-4.9 s; in
one scope per restored image (``benchmarks/inference.py``, variant ``fp32-unretained`` against ``fp32``) 2.74
s instead of 3.01 s and 4.29 s instead of 4.65 s. The values computed are the same; only where their memory
comes from changes. PyTorch's CUDA
caching allocator does the same on a GPU, and PyTorch's CPU performance-tuning guide recommends jemalloc or
tcmalloc (an ``LD_PRELOAD``) for the same reason.

The settings are process-wide, so the scope puts glibc back on exit, also when the run fails: mmap allowed
again, the mmap and trim thresholds at 32 / 64 MiB (where glibc's own dynamic thresholds settle once it has
freed a large block) and the retained memory returned to the system (``malloc_trim``). Nested scopes leave the
outer one in charge. Where the C library is not glibc (macOS, musl) or the model is not on a CPU, nothing
is touched.
"""
import contextlib
import ctypes
import functools
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
RETAINED_TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int): a 2 GiB free top is kept
DEFAULT_MMAP_MAX = 65536
SETTLED_MMAP_THRESHOLD = 32 * 2**20
SETTLED_TRIM_THRESHOLD = 2 * SETTLED_MMAP_THRESHOLD

_active_scopes = 0


@functools.cache
def glibc():
    """The process's glibc (``ctypes.CDLL``) when it runs on one, else None."""
    if platform.libc_ver()[0] != 'glibc':
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, 'mallopt') and hasattr(libc, 'malloc_trim') else None


def _mallopt(libc, param, value):
    if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
        raise OSError(f'glibc mallopt({param}, {value}) failed')


@contextlib.contextmanager
def retained_cpu_heap(enabled):
    """Context in which freed CPU memory stays mapped for reuse (see the module docstring).

    Args:
        enabled (bool): Whether to retain it (:func:`retain_cpu_memory_requested`); False touches nothing.
    """
    global _active_scopes
    libc = glibc() if enabled and _active_scopes == 0 else None
    if libc is None:
        yield
        return
    _mallopt(libc, M_MMAP_MAX, 0)
    _mallopt(libc, M_TRIM_THRESHOLD, RETAINED_TRIM_THRESHOLD)
    _active_scopes += 1
    try:
        yield
    finally:
        _active_scopes -= 1
        _mallopt(libc, M_MMAP_MAX, DEFAULT_MMAP_MAX)
        _mallopt(libc, M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
        _mallopt(libc, M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)
        libc.malloc_trim(ctypes.c_size_t(0))
