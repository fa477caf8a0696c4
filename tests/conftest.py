"""Fixtures several test modules share."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


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
