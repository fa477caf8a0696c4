"""`calltap run`: the whole appliance in one command. Starts a private redis-server (Unix
socket, persistence in the output directory) unless a Redis URL is given, one capture
process and N writer processes, and restarts any child that dies. On SIGTERM it stops the
capture first (its calls end as interrupted and become jobs), lets the writers drain the
queue, then stops them and Redis, all within STOP_BUDGET_S.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from calltap.log import log

# Everything stops within this after SIGTERM (systemd's default is 90 s; ours is 5).
STOP_BUDGET_S = 4.5
# Retention runs this long after start, then once a day.
RETENTION_FIRST_S, RETENTION_EVERY_S = 300.0, 86400.0
# A child that dies is restarted after this, doubling while it keeps dying, up to the max.
RESTART_FIRST_S, RESTART_MAX_S = 0.5, 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = RESTART_FIRST_S
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, interface: str, out: str, redis_url: str = "", writers: int = 2,
                 config: str = "", policy: str = "", metrics_port: int = 0,
                 bpf: str = "", listen: str = "", capture_procs: int = 1) -> None:
        from calltap.config import load_config

        cfg = load_config(config or None, {})  # a bad file fails here, before any child
        if listen:
            _check_listen(listen, os.path.abspath(out))
        self.out = os.path.abspath(out)
        self.state = os.path.join(self.out, ".calltap")
        os.makedirs(self.state, exist_ok=True)
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.redis_url = redis_url or self._start_redis()
        py = [sys.executable, "-m", "calltap.cli"]
        common = (["--config", config] if config else []) + ["--redis", self.redis_url]
        cap = [*py, "capture", "--interface", interface, "--spool",
               os.path.join(self.state, "spool"), *common]
        if policy:
            cap += ["--policy", policy]
        if metrics_port:
            cap += ["--metrics-port", str(metrics_port)]
        if bpf:
            cap += ["--filter", bpf]
        if capture_procs > 1:
            cap += ["--procs", str(capture_procs)]
        self.capture = Child("capture", cap)
        self.writers = [Child(f"writer-{k}", [*py, "writer", "--out", self.out, *common])
                        for k in range(writers)]
        self.extras: list[Child] = []
        """The dashboard and the webhook sender, when configured."""
        if listen:
            self.extras.append(Child("serve", [*py, "serve", "--out", self.out, "--listen",
                                               listen, "--redis", self.redis_url,
                                               *(["--config", config] if config else [])]))
        if cfg.webhook_url:
            hook = [*py, "webhooks", "--out", self.out]
            hook += ["--config", config] if config else []
            hook += ["--metrics-port", str(metrics_port + 1)] if metrics_port else []
            self.extras.append(Child("webhooks", hook))
        self.stopping = False
        self.retention: list[str] = []
        """The daily retention run's command, when the policy has retention classes."""
        if policy:
            from calltap.policyfile import load_policy

            if load_policy(policy).retention:
                self.retention = [*py, "retention", "run", "--out", self.out, "--policy",
                                  policy, *(["--config", config] if config else [])]
        self.retention_at = time.monotonic() + RETENTION_FIRST_S
        self.retention_proc: subprocess.Popen[bytes] | None = None

    def _start_redis(self) -> str:
        sock = os.path.join(self.state, "redis.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
             "--dir", self.state, "--appendonly", "yes", "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if time.monotonic() > deadline or self.redis_proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        return f"unix://{sock}"

    def children(self) -> list[Child]:
        return [self.capture, *self.writers, *self.extras]

    def run(self) -> int:
        def stop(_sig: int, _frame: Any) -> None:
            self.stopping = True

        def reload(_sig: int, _frame: Any) -> None:
            if self.capture.alive() and self.capture.proc:
                self.capture.proc.send_signal(signal.SIGHUP)  # re-read the policy

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
        for c in self.children():
            c.start()
        while not self.stopping:
            now = time.monotonic()
            keep_alive(self.children(), now)
            if self.retention and now >= self.retention_at and (
                    self.retention_proc is None or self.retention_proc.poll() is not None):
                self.retention_at = now + RETENTION_EVERY_S
                log("run", "retention run started", "info")
                self.retention_proc = subprocess.Popen(self.retention)
            time.sleep(0.1)
        return self.shutdown()

    def shutdown(self) -> int:
        deadline = time.monotonic() + STOP_BUDGET_S
        if self.capture.alive() and self.capture.proc:
            self.capture.proc.send_signal(signal.SIGTERM)
            try:
                self.capture.proc.wait(max(0.1, deadline - time.monotonic() - 2.0))
            except subprocess.TimeoutExpired:
                self.capture.proc.kill()
        # let the writers write what the capture handed over
        self._drain(deadline - 1.0)
        stop_all(self.writers, deadline - 0.3)
        stop_all(self.extras, deadline - 0.2)
        if self.redis_proc is not None:
            self.redis_proc.send_signal(signal.SIGTERM)
            try:
                self.redis_proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
        return 0

    def _drain(self, until: float) -> None:
        """Wait until no job is waiting or being written, or ``until``."""
        import redis

        from calltap.redisconn import connect
        from correlate.keys import Keys

        try:
            r = connect(self.redis_url, socket_timeout=1)
            keys = Keys()
            while time.monotonic() < until:
                # writers delete each job they finish: the stream holds only jobs waiting
                # or being written
                if sum(r.xlen(keys.jobs(k)) for k in keys.shards) == 0:
                    return
                time.sleep(0.05)
        except (redis.RedisError, OSError):
            return


def keep_alive(children: list[Child], now: float, who: str = "run") -> None:
    """Restart each child that exited, after a backoff that doubles while it keeps dying
    and halves while it stays up."""
    for c in children:
        if not c.alive():
            if c.next_start == 0.0:
                c.next_start = now + c.backoff
                c.backoff = min(RESTART_MAX_S, c.backoff * 2)
            elif now >= c.next_start:
                log(who, "child exited; restarting", "warning", child=c.name,
                    code=c.proc.returncode if c.proc else None, restarts=c.restarts + 1)
                c.restarts += 1
                c.next_start = 0.0
                c.start()
        elif c.next_start == 0.0:
            c.backoff = max(RESTART_FIRST_S, c.backoff / 2)


def stop_all(children: list[Child], until: float) -> None:
    """SIGTERM each child, then wait for them until ``until`` (monotonic); kill the rest."""
    for c in children:
        if c.alive() and c.proc:
            c.proc.send_signal(signal.SIGTERM)
    for c in children:
        if c.proc:
            try:
                c.proc.wait(max(0.1, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()


def _check_listen(listen: str, out: str) -> None:
    """The dashboard answers beyond loopback only with users (else it would refuse to
    start and be restarted forever)."""
    from calltap.accounts import Accounts
    from calltap.serve import access_path, is_loopback

    host = listen.rpartition(":")[0]
    if is_loopback(host):
        return
    path = access_path(out)
    if not os.path.exists(path) or not Accounts(path).has_users():
        raise RuntimeError(f"--serve {listen}: no users in {path}, so the dashboard listens "
                           "on loopback only; add one with `calltap users add`")
