"""RFC 3161 timestamps of the log's checkpoints, against OpenSSL acting as a local
time-stamping authority (its `openssl ts -reply`, behind a small HTTP server on loopback):
stamped at the end of an import, checked by `calltap verify --log --tsa-ca`, refused for
an altered checkpoint or a stamp of another; an authority that cannot be reached leaves
the checkpoint for the next run."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calltap.config import Config
from calltap.importer import Importer
from tests.helpers import ROOT
from writer.manifest import new_key_pair
from writer.timestamps import _status, request, stamps_dir

PY = [sys.executable, "-m", "calltap.cli"]
TSA_CNF = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {d}
serial = {d}/serial
crypto_device = builtin
signer_cert = {d}/tsa.crt
signer_key = {d}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ v3_tsa ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
"""


def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tsa")
    (d / "tsa.cnf").write_text(TSA_CNF.format(d=d))
    (d / "serial").write_text("01\n")
    _ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
         "ca.crt", "-subj", "/CN=Test TSA CA", "-days", "2", cwd=d)
    _ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
         "-subj", "/CN=Test TSA", cwd=d)
    _ssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "tsa.crt", "-days", "2", "-extfile", "tsa.cnf",
         "-extensions", "v3_tsa", cwd=d)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                (d / "q.tsq").write_bytes(body)
                subprocess.run(["openssl", "ts", "-reply", "-config", str(d / "tsa.cnf"),
                                "-queryfile", "q.tsq", "-out", "r.tsr"], cwd=d, check=True,
                               capture_output=True)
                reply = (d / "r.tsr").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", d / "ca.crt"
    finally:
        server.shutdown()


def test_the_request_is_what_openssl_reads(tmp_path: Path) -> None:
    digest = bytes(range(32))
    (tmp_path / "q.tsq").write_bytes(request(digest, 12345))
    text = subprocess.run(["openssl", "ts", "-query", "-in", str(tmp_path / "q.tsq"),
                           "-text"], capture_output=True, text=True, check=True).stdout
    assert "Hash Algorithm: sha256" in text and "Nonce: 0x3039" in text
    assert "Certificate required: yes" in text
    assert digest.hex()[:8] in text.replace(" ", "").replace("-", "").lower()
    assert _status(bytes.fromhex("30053003020100")) == 0  # granted, no token


def test_checkpoints_are_stamped_and_verified(tsa: tuple[str, Path], tmp_path: Path) -> None:
    url, ca = tsa
    new_key_pair(str(tmp_path / "s.key"), str(tmp_path / "s.pub"))
    out = tmp_path / "out"
    sample = str(ROOT / "pcaps" / "sample-calls.pcap")
    imp = Importer(Config(out=str(out), jobs=1, progress=False,
                          signing_key=str(tmp_path / "s.key"), tsa_url=url))
    imp.import_file(sample)
    imp.finish()
    assert imp.warnings == []
    stamp = Path(stamps_dir(str(out))) / "0.tsr"
    assert stamp.exists()
    cmd = [*PY, "verify", str(out), "--key", str(tmp_path / "s.pub"), "--log", "--tsa-ca",
           str(ca)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "1 timestamped" in r.stderr, r.stdout + r.stderr
    # OpenSSL on its own agrees, over the checkpoint as stored
    cps = out / ".calltap" / "log" / "checkpoints.jsonl"
    token = cps.read_bytes().strip()
    import hashlib

    r2 = subprocess.run(["openssl", "ts", "-verify", "-digest",
                         hashlib.sha256(token).hexdigest(), "-in", str(stamp), "-CAfile",
                         str(ca)], capture_output=True, text=True, check=False)
    assert "Verification: OK" in r2.stdout
    # a stamp that belongs to another checkpoint is refused, naming the checkpoint
    other = tmp_path / "other"
    imp = Importer(Config(out=str(other), jobs=1, progress=False,
                          signing_key=str(tmp_path / "s.key"), tsa_url=url))
    imp.import_file(str(ROOT / "pcaps" / "sample-calls.pcap"))
    imp.finish()
    shutil.copy(Path(stamps_dir(str(other))) / "0.tsr", stamp)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "checkpoint 0: timestamp 0.tsr: does not verify" in r.stdout


def test_an_unreachable_authority_leaves_the_stamp_for_the_next_run(
        tsa: tuple[str, Path], tmp_path: Path) -> None:
    url, ca = tsa
    new_key_pair(str(tmp_path / "s.key"), str(tmp_path / "s.pub"))
    out = tmp_path / "out"
    sample = str(ROOT / "pcaps" / "sample-calls.pcap")
    imp = Importer(Config(out=str(out), jobs=1, progress=False,
                          signing_key=str(tmp_path / "s.key"), tsa_url="http://127.0.0.1:9/"))
    imp.import_file(sample)
    imp.finish()
    assert any("not timestamped yet" in w for w in imp.warnings)  # the recordings are made
    assert not (Path(stamps_dir(str(out))) / "0.tsr").exists()
    from writer.timestamps import stamp_new

    assert stamp_new(str(out), url) == 1 and stamp_new(str(out), url) == 0
    r = subprocess.run([*PY, "verify", str(out), "--key", str(tmp_path / "s.pub"), "--log",
                        "--tsa-ca", str(ca)], cwd=ROOT, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0 and "1 timestamped" in r.stderr
