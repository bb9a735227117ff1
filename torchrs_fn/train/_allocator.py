"""Keep freed host memory for reuse: glibc's ``mallopt`` thresholds, set once per process.

A CPU train step allocates and frees the same large activations at every step (an MLP over
40,960 rows of 256 floats: 42 MB each). glibc serves any block above its mmap threshold (at most
32 MB, however it adapts) with a fresh ``mmap`` and returns it to the kernel on ``free``, so every
step page-faults those megabytes in again and the kernel zeroes them: in the listwise tutorial's
eager step, ``relu`` and its gradient took 6-7 ms per call for what is a 2 ms memory pass, and
an epoch took 0.67-0.83 s against 0.52-0.58 s with the thresholds below (alternating runs,
2-core CPU). Raising the mmap and trim thresholds to 1 GiB makes such blocks come from the heap
and stay there for the next step. The cost: the process keeps up to its peak heap instead of
returning memory to the system between steps.

``make_train_step`` and ``make_eval_step`` call ``keep_freed_memory()`` (nothing else in the
library touches the allocator; an evaluation's score blocks, e.g. 8,192 queries x 1,682
candidates in float32, 55 MB, are the same case). Set ``TORCHRS_FN_MALLOC_TUNING=0`` to leave
the allocator alone (for instance when jemalloc or tcmalloc is preloaded, or when the process
must give memory back). On anything but glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30
ENV = "TORCHRS_FN_MALLOC_TUNING"

_state: dict[str, bool] = {}


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        # gnu_get_libc_version exists only in glibc: musl and others keep their own allocator.
        libc.gnu_get_libc_version  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB, once per process; True if they are set.

    Does nothing (False) when ``TORCHRS_FN_MALLOC_TUNING=0``, off Linux or without glibc.
    """
    if "applied" in _state:
        return _state["applied"]
    applied = False
    if os.environ.get(ENV, "1") != "0":
        libc = _libc()
        if libc is not None:
            applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD)
            )
    _state["applied"] = applied
    return applied
