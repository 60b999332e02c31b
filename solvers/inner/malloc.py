"""Freed large arrays kept for reuse while large players are solved (glibc only).

An inner row of a player of 10^6 members allocates arrays of 8 MB (the kernels'
scratch and results, numpy's temporaries in the certificate's proof), a few dozen
per row. glibc's malloc maps each allocation above its mmap threshold afresh and
unmaps it when freed, so every row faults its pages in again: at 10^6 members
4-6 s of the certificate's time was the kernel's (system time, and the two row
threads queued on the page-fault lock). Raising the mmap and trim thresholds (and
a top pad) keeps freed arrays in the heap for the next row: measured 16.7 s ->
10 s of wall time, 4.4 s -> 0.8 s of system time; with one arena, a peak of
0.9 GB instead of 1.1 (benchmarks/bench_scale.py).

This is a setting of the whole process, so it is made once, and only when a
player of LARGE_MEMBERS members or more is solved; AGGREGAME_MALLOC=0 leaves
malloc alone (docs/cli.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import threading

LOG = logging.getLogger(__name__)

#: Members from which a player's solves set the thresholds.
LARGE_MEMBERS = 20_000
#: mallopt's parameters (malloc.h) and the values set. One arena: freed arrays
#: kept by one thread's arena would not serve another's (the certificate's row
#: threads), which added ~200 MB to the peak at 10^6 members; the lock it shares
#: is taken a few dozen times a row (small objects are Python's own).
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
SETTINGS = ((M_MMAP_THRESHOLD, 256 * 2**20), (M_TRIM_THRESHOLD, 2**30),
            (M_TOP_PAD, 256 * 2**20), (M_ARENA_MAX, 1))

_LOCK = threading.Lock()
_DONE: list[bool] = []


def keep_freed_arrays(members: int) -> None:
    """Set the thresholds (once per process) when ``members`` is LARGE_MEMBERS or
    more, on glibc, unless AGGREGAME_MALLOC=0."""
    if members < LARGE_MEMBERS or _DONE:
        return
    with _LOCK:
        if _DONE:
            return
        _DONE.append(True)
        if os.environ.get("AGGREGAME_MALLOC", "").strip() == "0" or \
                platform.libc_ver()[0] != "glibc":
            return
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = all(libc.mallopt(name, value) == 1 for name, value in SETTINGS)
        except (OSError, AttributeError):
            ok = False
        LOG.debug("malloc thresholds for large arrays %s", "set" if ok else
                  "not set")
