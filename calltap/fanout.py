"""`calltap capture --procs N`: N capture processes on one interface. The kernel spreads
its packets over them by AF_PACKET fanout (a hash of each flow's addresses and ports, the
same both ways; IP fragments put together first), so one SPAN port is decoded on N cores.
A call's SIP and RTP may reach different processes: they share the media map through
Redis, each records what it sees of the call, and the parts become one recording.

This parent process only starts the N, restarts one that dies (the kernel gives its flows
to the others meanwhile, which record them as parts), and passes signals on. Process ``i``
is probe ``<probe>.<i>`` with its spool in ``<spool>/<i>`` and its metrics on
``<metrics port> + METRICS_STEP * i``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from calltap.log import log
from calltap.supervise import STOP_BUDGET_S, Child, keep_alive, stop_all

# Capture processes on one interface at most: more than the cores a probe has buys nothing.
MAX_PROCS = 64
# Process i serves its metrics this far above process i-1 (clear of the next port `run`
# gives the webhook sender).
METRICS_STEP = 100


def child_argv(argv: list[str], i: int, group: int, probe: str, spool: str,
               metrics_port: int) -> list[str]:
    """The command line of capture process ``i``: the parent's, without ``--procs``, with
    its fanout group, name, spool and metrics port."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--procs", "--probe", "--spool", "--metrics-port"):
            skip = "=" not in arg
            continue
        out.append(arg)
    out += ["--fanout-group", str(group), "--probe", f"{probe}.{i}",
            "--spool", os.path.join(spool, str(i))]
    if metrics_port:
        out += ["--metrics-port", str(metrics_port + METRICS_STEP * i)]
    return out


def run_fanout(argv: list[str], procs: int, probe: str, spool: str, metrics_port: int
               ) -> int:
    group = os.getpid() & 0xFFFF
    py = [sys.executable, "-m", "calltap.cli"]
    children = [Child(f"capture-{i}", [*py, *child_argv(argv, i, group, probe, spool,
                                                         metrics_port)])
                for i in range(procs)]
    stopping = False

    def stop(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def reload(_sig: int, _frame: Any) -> None:
        for c in children:
            if c.alive() and c.proc:
                c.proc.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    for c in children:
        c.start()
    log("capture", "fanout started", procs=procs, group=group, probe=probe)
    while not stopping:
        keep_alive(children, time.monotonic(), "capture")
        time.sleep(0.1)
    stop_all(children, time.monotonic() + STOP_BUDGET_S - 0.5)
    return 0
