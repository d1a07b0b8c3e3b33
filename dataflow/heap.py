"""How the dataflow's process uses glibc's heap: a long-running stream allocates and frees numpy columns of every
size, batch after batch, and glibc's defaults let such a process's resident memory creep up for as long as it runs.
Both calls are no-ops off glibc."""

from __future__ import annotations

import ctypes
from typing import Optional

_LIBC: Optional[ctypes.CDLL]
try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _LIBC.malloc_trim  # noqa: B018 - only glibc has it
except (OSError, AttributeError):
    _LIBC = None

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit
_trim = True


def keep_large_blocks_mapped() -> None:
    """Serve every block of 128 KiB or more from its own mapping, returned to the system when freed. By default
    glibc raises that threshold each time such a block is freed (up to 32 MiB), after which the batches' columns
    come from the heap and leave it fragmented: a 10-minute run at 20,000 events/s grew the dataflow from about 200
    to 440 MiB with a flat count of Python objects, and stayed near 200 MiB with the threshold fixed
    (benchmarks/memory.py). Setting it explicitly turns the raising off."""
    if _LIBC is not None and _trim:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def keep_freed_memory_for_reuse() -> None:
    """For a run that ends (`pypi-pulse run`), the opposite policy: freed memory stays in the process and the next
    batch's buffers reuse it, instead of each one being mapped afresh and paying a page fault every 4 KiB (joining
    a batch's messages, splitting an export into lines). What a batch run holds is given back when it exits.
    Measured with `benchmarks/batch_run.py`. Called before the producer is forked, which
    inherits it."""
    global _trim
    _trim = False
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        _LIBC.mallopt(_M_TOP_PAD, 64 * 1024 * 1024)


def return_freed_memory() -> None:
    """Hand the heap freed by a minute's counters (hundreds of MB at 20,000 events/s) back to the system: glibc
    keeps freed blocks of large dicts otherwise, and the process's RSS only ever grows."""
    if _LIBC is not None and _trim:
        _LIBC.malloc_trim(0)
