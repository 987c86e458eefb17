"""Keep freed tensor memory in the process instead of handing it back to the kernel.

DefiNet's per-edge tensors (a few MB each on a 200-atom structure) lie above glibc's mmap
threshold, so every one of them is mapped fresh, zero-filled page by page by the kernel, and
unmapped again when freed: on a 2-core virtual machine that cost InSe structures 85 ms each
against 52-71 ms with it (the README's accuracy benchmark). Raising glibc's mmap and trim
thresholds lets them reuse heap memory, as jemalloc or tcmalloc would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks below this many bytes come from the heap (glibc's largest allowed value on 64 bit).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free heap above this many bytes goes back to the kernel.
TRIM_THRESHOLD = 256 * 1024 * 1024
#: Set to ``0`` to leave the allocator as it is.
ENV_SWITCH = "DEFINET_MALLOC_TUNING"

_tuned: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; whether they are raised.

    A no-op (``False``) off Linux, without glibc, or with ``DEFINET_MALLOC_TUNING=0``.
    """
    global _tuned
    if _tuned is None:
        _tuned = _set_thresholds()
    return _tuned


def _set_thresholds() -> bool:
    if os.environ.get(ENV_SWITCH, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
