"""The two heap policies do what they are for: a live dataflow maps large blocks afresh (its memory can go back to
the system), a batch run keeps freed memory and reuses it (no page fault per 4 KiB for each batch's buffers)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pypi_pulse.dataflow import heap

_FAULTS = """
import resource, sys
from pypi_pulse.dataflow import heap
getattr(heap, sys.argv[1])()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = b"x" * (8 << 20)  # a batch-sized buffer, made and freed
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(policy: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, policy], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(heap._LIBC is None, reason="glibc only")
def test_a_batch_run_reuses_freed_buffers_where_a_live_run_maps_them_afresh():
    mapped, reused = _faults("keep_large_blocks_mapped"), _faults("keep_freed_memory_for_reuse")
    pages = 20 * (8 << 20) // 4096
    assert mapped >= pages * 0.9  # every buffer touched anew
    assert reused <= pages * 0.1  # the first one's pages, then the same memory again
