"""Recording-ready webhooks: each index line POSTed once, signed, in order, to a receiver on
loopback; a receiver down for ten seconds gets every POST after it comes back, each once;
a sender restarted resumes where it stopped; the receiver's secret path never reaches the
logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from calltap.generate import GenOptions, generate
from calltap.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookSender, signature
from tests.helpers import load_index, run_import

SECRET = "s3cret-for-the-test"


class Receiver:
    """A webhook receiver on loopback that keeps what it got; stop() and start() again on
    the same port play a receiver that is down."""

    def __init__(self, port: int = 0) -> None:
        self.got: list[tuple[str, str, bytes]] = []
        self.port = port
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append((self.headers[SIGNATURE_HEADER], self.headers[DELIVERY_HEADER],
                            body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.allow_reuse_address = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"call_id":"x"}'
    want = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature(SECRET, body) == "sha256=" + want


def test_lines_are_delivered_in_order_once_and_a_torn_line_waits(tmp_path: Path) -> None:
    rx = Receiver()
    rx.start()
    index = tmp_path / "index.jsonl"
    index.write_text('{"old": 1}\n')  # before the first start: not announced
    s = WebhookSender(str(tmp_path), f"http://127.0.0.1:{rx.port}/hook", SECRET)
    with open(index, "a") as f:
        f.write('{"n": 1}\n{"n": 2}\n{"n": 3')  # the third is still being written
    assert s.step(sleep=False) == 2
    with open(index, "a") as f:
        f.write('}\n')
    assert s.step(sleep=False) == 1 and s.step(sleep=False) == 0
    assert [json.loads(b)["n"] for _s, _d, b in rx.got] == [1, 2, 3]
    assert all(sig == signature(SECRET, b) for sig, _d, b in rx.got)
    assert len({d for _s, d, _b in rx.got}) == 3
    with pytest.raises(RuntimeError, match="another webhook sender"):
        WebhookSender(str(tmp_path), f"http://127.0.0.1:{rx.port}/hook", SECRET)
    s.close()
    # a new sender goes on from the saved position
    with open(index, "a") as f:
        f.write('{"n": 4}\n')
    s2 = WebhookSender(str(tmp_path), f"http://127.0.0.1:{rx.port}/hook", SECRET)
    assert s2.step(sleep=False) == 1 and json.loads(rx.got[-1][2])["n"] == 4
    s2.close()
    rx.stop()


def test_a_refused_delivery_is_retried_not_skipped(tmp_path: Path) -> None:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]  # nobody listens here yet
    (tmp_path / "index.jsonl").write_text("")
    s = WebhookSender(str(tmp_path), f"http://127.0.0.1:{port}/", SECRET)
    with open(tmp_path / "index.jsonl", "a") as f:
        f.write('{"n": 1}\n')
    assert s.step(sleep=False) == 0 and s.counters.failures == 1
    assert s.counters.backlog_bytes == len('{"n": 1}\n')
    rx = Receiver(port)
    rx.start()
    assert s.step(sleep=False) == 1 and len(rx.got) == 1
    s.close()
    rx.stop()


def test_every_recording_arrives_once_across_a_ten_second_outage(tmp_path: Path) -> None:
    rx = Receiver()
    rx.start()
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.jsonl").write_text("")
    env = {**os.environ, "CALLTAP_WEBHOOK_URL": f"http://127.0.0.1:{rx.port}/k/path-secret",
           "CALLTAP_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "calltap.cli", "webhooks", "--out",
                             str(out)], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.0)
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    generate(str(a), GenOptions(calls=3, duration=1.0, seed=1))
    generate(str(b), GenOptions(calls=4, duration=1.0, seed=2))
    run_import([a], out, jobs=1)
    _wait(lambda: len(rx.got) == 3, 10)
    rx.stop()  # the receiver is down for ten seconds while four more are recorded
    down = time.monotonic()
    run_import([b], out, jobs=1)
    time.sleep(max(0.0, 10 - (time.monotonic() - down)))
    assert len(rx.got) == 3
    rx.start()
    back = time.monotonic()
    _wait(lambda: len(rx.got) == 7, 15)
    print(f"measured: all four delivered {time.monotonic() - back:.2f} s after the "
          "receiver came back")
    time.sleep(1.5)  # nothing more comes
    proc.terminate()
    _out, err = proc.communicate(10)
    lines = [e for e in load_index(out)]
    assert [json.loads(body) for _s, _d, body in rx.got] == lines
    assert all(sig == signature(SECRET, body) for sig, _d, body in rx.got)
    assert len({d for _s, d, _b in rx.got}) == 7
    assert "delivery failed" in err
    assert "path-secret" not in err and SECRET not in err


def _wait(cond: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_appliance_starts_a_sender_when_one_is_configured(tmp_path: Path) -> None:
    from calltap.supervise import Supervisor

    cfg = tmp_path / "c.toml"
    cfg.write_text('webhook_url = "http://127.0.0.1:9/x"\nwebhook_secret = "k"\n')
    sup = Supervisor("lo", str(tmp_path / "out"), "unix:///nonexistent", 1, str(cfg))
    names = [c.name for c in sup.children()]
    assert "webhooks" in names and "serve" not in names
    hook = next(c for c in sup.children() if c.name == "webhooks")
    assert hook.argv[-4:] == ["--out", str(tmp_path / "out"), "--config", str(cfg)]
    sup = Supervisor("lo", str(tmp_path / "out"), "unix:///nonexistent", 1,
                     listen="127.0.0.1:8080")
    serve = next(c for c in sup.children() if c.name == "serve")
    assert serve.argv[-6:] == ["--out", str(tmp_path / "out"), "--listen", "127.0.0.1:8080",
                               "--redis", "unix:///nonexistent"]
    with pytest.raises(RuntimeError, match="no users"):
        Supervisor("lo", str(tmp_path / "out"), "unix:///nonexistent", 1,
                   listen="0.0.0.0:8080")
