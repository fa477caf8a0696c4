"""Encryption at rest, end to end: a sealed import holds no plain audio anywhere under its
output (spool included, while calls are open), `calltap decrypt` restores files identical
to a plain import, a writer with only the public key cannot read what it wrote, erasure
leaves every copy unreadable, and the dashboard with the private key serves the plain
files from memory."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from calltap.config import Config
from calltap.decrypt import decrypt
from calltap.generate import GenOptions, generate
from calltap.importer import Importer
from calltap.retention import erase
from calltap.serve import create_app
from calltap.verify import verify_calls
from capture.pcapfile import close_capture, open_capture
from tests.helpers import ROOT, leaked, load_index, read_wav
from writer import seal
from writer.g711 import ulaw_decode
from writer.keystore import KeyStore, store_dir
from writer.manifest import new_key_pair
from writer.options import WriteOptions

PY = [sys.executable, "-m", "calltap.cli"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("editcap") is None:
        pytest.skip("editcap is not installed (.ci/setup installs tshark)")
    d = tmp_path_factory.mktemp("sealed")
    keys = d / "keys"
    keys.mkdir()
    seal.new_key_pair(str(keys / "encryption.key"), str(keys / "encryption.pub"))
    new_key_pair(str(keys / "signing.key"), str(keys / "signing.pub"))
    pcap = d / "calls.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=12.0, seed=11, codecs=("PCMU",)))
    # as pcapng, read as a stream: each call's media is spooled under the output directory
    streamed = d / "calls.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(streamed)], check=True,
                   capture_output=True)
    common = {"jobs": 1, "progress": False, "signing_key": str(keys / "signing.key")}
    plain = Importer(Config(out=str(d / "plain"), **common))
    plain.import_file(str(streamed))
    plain.finish()
    sealed = Importer(Config(out=str(d / "sealed"), encrypt_to=str(keys / "encryption.pub"),
                             **common))
    # a writer holds only the public key
    assert sealed.options.encrypt_to and not hasattr(sealed.options, "decrypt_key")
    sealed.import_file(str(streamed))
    spools = [p for p in (d / "sealed").iterdir() if p.name.startswith(".spool-")]
    snapshot = d / "spool-while-open"
    shutil.copytree(spools[0], snapshot)  # the calls are still open: their spools
    sealed.finish()
    return {"dir": d, "keys": keys, "pcap": pcap, "plain": d / "plain",
            "sealed": d / "sealed", "spool": snapshot}


def _needles(pcap: Path) -> list[bytes]:
    """Pieces of every RTP payload as sent, and of its decoded PCM."""
    payloads = []
    r = open_capture(str(pcap))
    for _ts, _link, frame in r:
        payload = frame[42:]
        if len(payload) == 172 and payload[0] == 0x80 and payload[1] & 0x7F == 0:
            payloads.append(payload[12:])
    close_capture(r)
    assert len(payloads) > 1000
    return [p[40:72] for p in payloads[::7]] + [
        ulaw_decode(np.frombuffer(p, np.uint8)).tobytes()[80:144] for p in payloads[::7]]


def test_no_plain_audio_rests_under_the_output_or_the_spool(world: dict[str, Path]) -> None:
    needles = _needles(world["pcap"])
    # the decoded pieces are the recording's: one channel of a plain run's WAV holds them
    wavs = [read_wav(world["plain"] / e["audio"])[0] for e in load_index(world["plain"])]
    mono = b"".join(np.ascontiguousarray(w[:, c]).tobytes() for w in wavs for c in (0, 1))
    assert sum(n in mono for n in needles) > len(needles) // 3
    # and the plain recordings as written (both channels interleaved), in pieces
    needles += [w[k:k + 16].tobytes() for w in wavs for k in range(800, len(w), 4000)
                if w[k:k + 16].any()]
    assert leaked(world["plain"], needles)  # the search finds audio where it is plain
    assert any(world["spool"].iterdir())
    assert leaked(world["spool"], needles) == []
    assert leaked(world["sealed"], needles) == []
    names = [p.name for p in world["sealed"].rglob("*") if p.is_file()
             and p.relative_to(world["sealed"]).parts[0].isdigit()]
    assert names and all(n.endswith((".enc", ".manifest.jws")) for n in names)


def test_decrypt_restores_the_plain_run(world: dict[str, Path]) -> None:
    dest = world["dir"] / "restored"
    rep = decrypt(str(world["sealed"]), str(world["keys"] / "encryption.key"), str(dest))
    assert rep.problems == [] and rep.calls == 3
    plain = sorted(p.relative_to(world["plain"]) for p in world["plain"].rglob("*")
                   if p.is_file() and p.relative_to(world["plain"]).parts[0].isdigit()
                   and not p.name.endswith(".manifest.jws"))
    restored = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file()
                      and p.name != "index.jsonl")
    assert plain == restored and rep.files == len(plain)
    for rel in plain:
        assert (world["plain"] / rel).read_bytes() == (dest / rel).read_bytes(), rel
    # and their index lines: the plain run's, less the manifest (it names sealed files)
    assert sorted(load_index(dest), key=lambda e: e["call_id"]) == sorted(
        ({k: v for k, v in e.items() if k != "manifest"} for e in load_index(world["plain"])),
        key=lambda e: e["call_id"])
    # the command does the same, and checks the manifests' plain digests
    again = world["dir"] / "again"
    r = subprocess.run([*PY, "decrypt", str(world["sealed"]), "--key",
                        str(world["keys"] / "encryption.key"), "--to", str(again)],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert f"restored {len(plain)} files of 3 calls" in r.stderr
    rep = verify_calls(str(world["sealed"]), str(world["keys"] / "signing.pub"))
    assert not rep.problems and rep.calls == 3
    # vCons come from the plain copy; the sealed directory says so
    cfg = world["dir"] / "sign.toml"
    cfg.write_text(f'signing_key = "{world["keys"] / "signing.key"}"\n')
    from writer.vcon import self_signed_certificate

    self_signed_certificate(str(world["keys"] / "signing.key"),
                            str(world["keys"] / "signing.crt"), "test")
    r = subprocess.run([*PY, "export", "vcon", str(world["sealed"]), "--to",
                        str(world["dir"] / "vcons"), "--base-url", "https://rec.example",
                        "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 1 and "3 sealed calls not exported" in r.stderr
    r = subprocess.run([*PY, "export", "vcon", str(dest), "--to", str(world["dir"] / "vc2"),
                        "--base-url", "https://rec.example", "--config", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "3 vCons written" in r.stdout, r.stderr


def test_a_writer_with_the_public_key_only_cannot_read_back(world: dict[str, Path],
                                                            tmp_path: Path) -> None:
    import soundfile

    (e, *_rest) = load_index(world["sealed"])
    wav = world["sealed"] / (e["audio"] + seal.SUFFIX)
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.read(str(wav))
    store = KeyStore(store_dir(str(world["sealed"])))
    entry = store.get(e["encrypted"]["key_id"])
    assert entry is not None and set(entry) == {"v", "alg", "key_id", "recipient", "epk",
                                                "wrapped"}
    # what a writer holds (the public key, its options) opens nothing; neither does
    # another private key
    seal.new_key_pair(str(tmp_path / "x.key"), str(tmp_path / "x.pub"))
    with pytest.raises(seal.SealError):
        store.data_key(e["encrypted"]["key_id"], seal.load_private(str(tmp_path / "x.key")))
    with pytest.raises(seal.SealError):
        seal.load_private(str(world["keys"] / "encryption.pub"))
    with pytest.raises(seal.SealError):
        seal.open_bytes(str(wav), bytes(32))
    r = subprocess.run([*PY, "decrypt", str(world["sealed"]), "--key",
                        str(world["keys"] / "encryption.pub"), "--to", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "not an X25519 private key" in r.stderr
    assert WriteOptions(encrypt_to="k.pub").encrypt_to == "k.pub"


def test_dashboard_serves_sealed_calls_from_memory(world: dict[str, Path]) -> None:
    key = str(world["keys"] / "encryption.key")
    client = TestClient(create_app(str(world["sealed"]), decrypt_key=key))
    plain_index = {e["call_id"]: e for e in load_index(world["plain"])}
    e = load_index(world["sealed"])[0]
    call_id = os.path.basename(e["summary"]).removesuffix(".json")
    wav = (world["plain"] / plain_index[e["call_id"]]["audio"]).read_bytes()
    r = client.get(f"/api/calls/{call_id}/files/audio", headers={"Range": "bytes=100-70099"})
    assert r.status_code == 206 and r.content == wav[100:70100]
    assert r.headers["content-range"] == f"bytes 100-70099/{len(wav)}"
    r = client.get(f"/api/calls/{call_id}/audio")
    assert r.status_code == 200 and r.content == wav
    mp3 = client.get(f"/api/calls/{call_id}/audio?format=mp3")
    assert mp3.status_code == 200 and len(mp3.content) > 1000
    summary = client.get(f"/api/calls/{call_id}").json()["summary"]
    assert summary == json.loads((world["plain"] / e["summary"]).read_text())
    view = client.get(f"/api/calls/{call_id}/view").json()
    assert view == json.loads((world["plain"] / e["view"]).read_text())
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/calls/{call_id}/zip").content))
    assert z.read(os.path.basename(e["audio"])) == wav
    assert not (world["sealed"] / ".calltap" / "transcoded").exists()  # nothing cached
    # the search still finds it by its signalling address
    addr = summary["call"]["caller_signalling"].rsplit(":", 1)[0]
    found = client.get("/api/calls", params={"cidr": addr}).json()
    assert call_id in [c["id"] for c in found["calls"]]
    locked = TestClient(create_app(str(world["sealed"])))
    r = locked.get(f"/api/calls/{call_id}/files/audio")
    assert r.status_code == 409 and "decrypt_key" in r.text


def test_erasure_reaches_every_copy(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(world["sealed"], out)
    backup = tmp_path / "backup"
    shutil.copytree(out, backup, ignore=shutil.ignore_patterns(".calltap"))
    e = load_index(out)[1]
    key = os.path.basename(e["summary"]).removesuffix(".json")
    files = erase(str(out), key, "GDPR art. 17", "test", str(world["keys"] / "signing.key"),
                  "2026-12-02T00:00:00Z", 0.0)
    assert files and not (out / (e["audio"] + seal.SUFFIX)).exists()
    log = [json.loads(x) for x in (out / ".calltap" / "log" / "entries.jsonl").read_text()
           .splitlines()]
    assert log[-1]["type"] == "erasure"
    assert log[-1]["key_erased"] == e["encrypted"]["key_id"]
    # the backup's copy of the recording, with the private key, opens no more
    shutil.copytree(out / ".calltap", backup / ".calltap")
    rep = decrypt(str(backup), str(world["keys"] / "encryption.key"), str(tmp_path / "r"),
                  call=key)
    assert rep.files == 0 and "not in the key store" in rep.problems[0]


def test_a_call_written_again_gets_a_new_key_and_the_old_one_goes(tmp_path: Path) -> None:
    seal.new_key_pair(str(tmp_path / "e.key"), str(tmp_path / "e.pub"))
    sample = ROOT / "pcaps" / "sample-calls.pcap"
    out = tmp_path / "out"
    for _ in range(2):  # the same capture imported twice: the files are replaced
        imp = Importer(Config(out=str(out), jobs=1, progress=False,
                              encrypt_to=str(tmp_path / "e.pub")))
        imp.import_file(str(sample))
        imp.finish()
    index = load_index(out)
    assert len(index) == 4  # one line per call, naming the first write's key
    keys = list((out / ".calltap" / "keys").rglob("*.json"))
    assert len(keys) == 4 and not any(e["encrypted"]["key_id"] in str(k) for e in index
                                      for k in keys)
    rep = decrypt(str(out), str(tmp_path / "e.key"), str(tmp_path / "plain"))
    assert rep.problems == [] and rep.calls == 4 and rep.files == 20
    e = index[0]
    files = erase(str(out), os.path.basename(e["summary"]).removesuffix(".json"), "test",
                  "test", "", "2026-12-02T00:00:00Z", 0.0)
    assert len(files) == 5 and len(list((out / ".calltap" / "keys").rglob("*.json"))) == 3
