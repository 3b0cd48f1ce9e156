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
comes from changes. PyTorch's CUDA caching allocator does the same on a GPU, and PyTorch's CPU
performance-tuning guide recommends jemalloc or tcmalloc (an ``LD_PRELOAD``) for the same reason.

The settings are process-wide. On exit, also when the run fails, the scope allows mmap again, fixes the mmap
and trim thresholds at 32 / 64 MiB and returns the retained memory to the system (``malloc_trim``). This is not
glibc's exact prior state: any ``mallopt`` call ends glibc's dynamic threshold for the rest of the process
(and overrides ``MALLOC_*_`` / ``GLIBC_TUNABLES`` settings of these three), so after the first scope
allocations of 32 MiB and less come from the heap and larger ones are mmap-ed, as glibc's dynamic rule does at
most. Anything long-lived that is allocated inside the scope (e.g. prepacked weights, the last output) sits in
the heap, not in its own mapping. Freed heap below it stays heap address space: ``malloc_trim`` returns its pages
(a freed 256 MiB block below a 16 MiB survivor: 1066 MiB resident in the scope, 807 MiB after it, 793 MiB before
it), and later allocations, large ones too, may be served from it instead of a fresh mmap. Nested scopes leave
the outer one in charge. Where the C library is not glibc (macOS, musl) or the model is not on a CPU, nothing is
touched.
"""
import contextlib
import ctypes
import functools
import platform
import warnings

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
RETAINED_TRIM_THRESHOLD = 2**31 - 1  # a free heap top of up to 2 GiB stays mapped
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
    """``mallopt(param, value)``; False (and a warning) when glibc refuses it."""
    if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
        return True
    warnings.warn(f'glibc mallopt({param}, {value}) was refused; freed CPU memory is not retained as asked')
    return False


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
    _active_scopes += 1
    try:
        if _mallopt(libc, M_MMAP_MAX, 0):
            _mallopt(libc, M_TRIM_THRESHOLD, RETAINED_TRIM_THRESHOLD)
        yield
    finally:
        _active_scopes -= 1
        for param, value in ((M_MMAP_MAX, DEFAULT_MMAP_MAX), (M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD),
                             (M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)):
            _mallopt(libc, param, value)
        libc.malloc_trim(ctypes.c_size_t(0))
