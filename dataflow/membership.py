"""Which member of a dataflow cluster over several machines this process is, and where the others are, in the
form a Kubernetes StatefulSet gives them.

A StatefulSet's pods are named `<set>-0`, `<set>-1`, ... and keep their name across restarts, so the pod's name
(`metadata.name`, through the downward API on every Kubernetes version) carries the member's index; the
`apps.kubernetes.io/pod-index` label does too, but only from Kubernetes 1.28. A headless Service gives each pod a
stable DNS name, `<set>-<i>.<service>.<namespace>.svc`, so every member's address follows from one pattern and the
number of replicas: writing the list out by hand would have to change with every resize.

Bytewax (through Timely) binds this member's own address once, at start, and fails if the name does not resolve;
a pod's DNS record appears shortly after the pod starts (the Service must publish pods that are not ready yet,
since a member is not ready until the whole cluster has formed). So a member waits for its own name first.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Optional

from pypi_pulse.errors import UserError

MEMBER = "{i}"  # in an address pattern: the member's index, 0 .. size - 1
_INDEX = re.compile(r"(?:.*[^-]-)?(\d+)")  # "3", or a pod name ending in "-3"
_ADDRESS = re.compile(r"(?P<host>[^\s:;]+|\[[0-9a-fA-F:.]+\]):(?P<port>\d+)")


def member_index(value: str) -> int:
    """The member's index from `process_id`: a number, or a StatefulSet pod's name (`pypi-pulse-dataflow-3` -> 3)."""
    found = _INDEX.fullmatch(value.strip())
    if found is None:
        raise ValueError(
            f"{value!r} is neither a number nor a StatefulSet pod's name ending in its ordinal (dataflow-3): "
            "give the member's index, or the pod's name (metadata.name)"
        )
    return int(found.group(1))


def check_address_pattern(pattern: str) -> None:
    """A pattern must name every member apart ({i}) and, once filled in, be HOST:PORT."""
    if MEMBER not in pattern:
        raise ValueError(
            f"{pattern!r} has no {MEMBER}: each member's address must differ by its index, like "
            "pypi-pulse-dataflow-{i}.pypi-pulse-dataflow-peers.pypi-pulse.svc:2101"
        )
    sample = pattern.replace(MEMBER, "0")
    found = _ADDRESS.fullmatch(sample)
    if found is None or not 0 < int(found.group("port")) < 65536:
        raise ValueError(f"{pattern!r} is not HOST:PORT with {MEMBER} for the member's index (port 1-65535)")


def peer_addresses(pattern: str, size: int) -> list[str]:
    """Every member's address, in index order: the list `--addresses` would give."""
    return [pattern.replace(MEMBER, str(i)) for i in range(size)]


def generated_members(
    size: Optional[int], pattern: Optional[str], addresses: Optional[str], process_id: Optional[int]
) -> Optional[list[str]]:
    """The members' addresses from `cluster_size` and `cluster_address`, or None when they are not set; this
    member's index must be among them."""
    if size is None and pattern is None:
        return None
    if addresses is not None:
        raise UserError(
            "--addresses lists the members and cluster_size with cluster_address (PYPI_PULSE_CLUSTER_SIZE, "
            "PYPI_PULSE_CLUSTER_ADDRESS) make the list: set one or the other"
        )
    if size is None or pattern is None:
        missing = "PYPI_PULSE_CLUSTER_ADDRESS" if pattern is None else "PYPI_PULSE_CLUSTER_SIZE"
        raise UserError(
            f"cluster_size and cluster_address make the members' addresses together: set {missing} too "
            "(e.g. PYPI_PULSE_CLUSTER_SIZE=3, PYPI_PULSE_CLUSTER_ADDRESS=pypi-pulse-dataflow-{i}."
            "pypi-pulse-dataflow-peers.pypi-pulse.svc:2101)"
        )
    if process_id is None:
        raise UserError(
            "cluster_size needs this member's index: set PYPI_PULSE_PROCESS_ID (on Kubernetes to the pod's "
            "metadata.name) or pass --process-id"
        )
    if not 0 <= process_id < size:
        raise UserError(
            f"process_id {process_id} is out of range: cluster_size is {size} (members 0 to {size - 1}); it must "
            "be the StatefulSet's replicas"
        )
    return peer_addresses(pattern, size)


def wait_resolvable(
    address: str, wait_s: float, poll_s: float = 0.5, tick: Optional[Callable[[], None]] = None
) -> None:
    """Return once this member's own host name resolves to an address of this machine, which Bytewax needs to
    listen on it (a restarted pod's name may still give its previous IP for a few seconds); `tick` each poll (the
    liveness heartbeat: a member waiting here is not stuck, and says why it gave up once `wait_s` is out)."""
    host = address.rpartition(":")[0].strip("[]")
    deadline = time.monotonic() + wait_s
    while True:
        if tick is not None:
            tick()
        try:
            found = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
            if any(_is_local(ip) for ip in found):
                return
            problem = f"it resolves to {', '.join(sorted(found))}, not an address of this machine"
        except socket.gaierror as exc:
            problem = f"it does not resolve ({exc.strerror})"
        if time.monotonic() >= deadline:
            raise UserError(
                f"this member's address {address} is not this machine's after {wait_s:g} s: {problem}; on "
                "Kubernetes the StatefulSet's serviceName must be the peers' headless Service, which must set "
                "publishNotReadyAddresses: true"
            )
        time.sleep(poll_s)


def _is_local(ip: str) -> bool:
    """Whether this machine can listen on `ip` (what Bytewax will do with it)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, 0))
            return True
        except OSError:
            return False
