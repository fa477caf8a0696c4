"""Fixtures several test modules share."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# CI runs the suite in two workers (`-n 2`). These modules capture on loopback, bind fixed
# ports, drive chromium or measure latency against wall-clock bounds: one worker runs them
# one after another, so they never see each other's traffic or compete for a port, while
# the other worker takes the rest of the suite a module at a time.
SERIAL_MODULES = frozenset({
    "test_e2e_access", "test_e2e_dashboard", "test_e2e_failover", "test_e2e_fanout",
    "test_e2e_kamailio", "test_e2e_live", "test_e2e_live_dashboard", "test_e2e_probes",
    "test_e2e_storage", "test_redis_acl", "test_webhooks",
})


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class SerialApart(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "serial" if Path(module).stem in SERIAL_MODULES else module

    return SerialApart(config, log)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/setup installs it)")
    sock = tmp_path / "r.sock"
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock), "--save",
                          ""], stdout=subprocess.DEVNULL)
    while not sock.exists():
        time.sleep(0.02)
    yield f"unix://{sock}", p
    p.send_signal(signal.SIGCONT)
    p.terminate()
    p.wait(10)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of the test session's own (Debian's postgresql, run as the
    postgres user from a directory of its own, on a loopback port)."""
    import glob
    import os
    import pwd
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (.ci/setup installs postgresql)")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL as its own user needs root")
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user (the postgresql package makes it)")
    bindir = os.path.dirname(bins[-1])
    home = tempfile.mkdtemp(prefix="calltap-pg-")
    os.chown(home, pg.pw_uid, pg.pw_gid)
    port = 17700 + os.getpid() % 200
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{bindir}/initdb", "-D", f"{home}/data", "-A", "trust", "-U",
                    "postgres", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", f"{home}/data", "-w", "-l",
                    f"{home}/log", "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", f"{home}/data", "-m", "immediate",
                        "stop"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
