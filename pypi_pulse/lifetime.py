"""Children that cannot outlive us: a SIGKILLed parent runs no cleanup, so the kernel must do it.

`die_with_parent` runs in the child between fork and exec (Popen's preexec_fn) and asks Linux for a signal when
the parent goes (PR_SET_PDEATHSIG). The signal comes when the thread that started the child exits, so children
are started from threads that live as long as the process (the main thread). Elsewhere than Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> None:
    """Ask for `sig` when the parent dies; if `parent_pid` (the parent's pid taken before the fork) is already
    gone, the request came too late to fire, so exit now."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except OSError:
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def dying_with(sig: int = signal.SIGTERM):
    """A preexec_fn for Popen: the child gets `sig` when this process dies."""
    parent = os.getpid()
    return lambda: die_with_parent(sig, parent)
