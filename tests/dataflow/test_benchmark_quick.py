"""The quick mode of benchmark 1 runs in CI: 200,000 synthetic events through the real broker, dataflow and SQLite
sink, compared row by row with an independent count. It checks exactness only, never speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "dataflow_throughput.py"


@pytest.mark.timeout(1800)
def test_quick_benchmark_counts_are_exact(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "counts EXACT" in proc.stdout
    assert "every window, daily row and counter exact" in proc.stdout
