"""`up` warns when the embedded broker starts to hurt: memory it holds, and CPU that grows with what it holds.

Real processes stand in for the broker (a busy loop, a process holding memory, an idle one): the watch reads
/proc through psutil exactly as it reads Tansu's.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pypi_pulse.supervisor import BrokerWatch


@pytest.fixture
def child():
    procs = []

    def start(code: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout.readline() == b"ready\n"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def checks_until(watch: BrokerWatch, done, timeout: float = 30.0) -> list[str]:
    messages, deadline = [], time.monotonic() + timeout
    while not done(messages) and time.monotonic() < deadline:
        messages += watch.check()
        time.sleep(0.05)
    return messages


def test_a_busy_broker_is_reported_once_per_level(child):
    proc = child("print('ready', flush=True)\nwhile True: pass")
    watch = BrokerWatch(proc.pid, warn_bytes=2**40, warn_cores=0.5, every_s=1.0)
    messages = checks_until(watch, lambda m: m)
    assert len(messages) == 1, messages
    assert "of a core" in messages[0] and "PYPI_PULSE_LINGER_MS" in messages[0] and "--bootstrap-servers" in messages[0]
    assert watch.warn_cores == 0.75  # the next warning needs a quarter of a core more


def test_an_idle_broker_gets_no_cpu_warning(child):
    proc = child("import time\nprint('ready', flush=True)\ntime.sleep(120)")
    watch = BrokerWatch(proc.pid, warn_bytes=2**40, warn_cores=0.5, every_s=0.5)
    started = watch._since
    # three measuring periods have passed, none of them over the level
    assert checks_until(watch, lambda m: m or watch._since - started >= 1.5, timeout=10) == []
    assert watch._since - started >= 1.5


def test_memory_is_reported_at_each_doubling(child):
    proc = child(
        "import time\nheld = bytearray(300 * 2**20)\nheld[::4096] = b'x' * len(held[::4096])\n"
        "print('ready', flush=True)\ntime.sleep(120)"
    )
    watch = BrokerWatch(proc.pid, warn_bytes=100 * 2**20, warn_cores=99.0, every_s=3600)
    first = watch.check()
    assert len(first) == 1 and "GiB" in first[0] and "retention" in first[0]
    assert watch.warn_bytes == 200 * 2**20
    assert len(watch.check()) == 1  # 300 MiB passes 200 MiB too
    assert watch.check() == []  # and not 400 MiB
