"""`pypi-pulse broker` owns its Tansu child: a SIGKILL of the wrapper (no cleanup runs) takes the child down too,
and the port can be bound again at once, though the killed broker's connections sit in TIME_WAIT."""

from __future__ import annotations

import os
import signal
import time

import psutil
from broker_faults_testing import start_broker, stop, wait_for
from confluent_kafka import Producer

from pypi_pulse.broker import free_port


def _children(proc) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def test_a_sigkilled_broker_wrapper_leaves_no_tansu_and_its_port_binds_again_at_once(tmp_path):
    port = free_port()
    wrapper = start_broker(port, tmp_path)
    tansu = _children(wrapper)
    assert tansu, "the wrapper runs its broker as a child"
    # a client that talked to it: the killed broker's side of the connection is left in TIME_WAIT
    p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
    p.list_topics(timeout=10)
    os.kill(wrapper.pid, signal.SIGKILL)
    wrapper.wait(10)
    wait_for(
        lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in tansu),
        10,
        "the Tansu child to exit with its wrapper",
    )
    del p
    started = time.monotonic()
    again = start_broker(port, tmp_path, "broker-again")
    try:
        assert time.monotonic() - started < 10
    finally:
        assert stop(again) == 0
