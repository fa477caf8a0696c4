"""The dashboard's API, endpoint by endpoint, over a real import: paging bounds, sorting,
bad parameters (4xx with a message), unknown and path-like ids (404), Range requests
(206, the right bytes), transcoding, the zip, CSV, the overview and the OpenAPI
document (valid, every route listed)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from calltap.generate import GenOptions, generate
from calltap.serve import create_app, is_loopback
from tests.helpers import load_index, run_import


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("serve")
    pcap = d / "g.pcap"
    generate(str(pcap), GenOptions(calls=7, duration=3.0, varied=True, loss=0.02, seed=9))
    run_import([pcap], d / "out", jobs=1)
    return d / "out"


@pytest.fixture(scope="module")
def client(out: Path) -> TestClient:
    return TestClient(create_app(str(out)))


def _first(client: TestClient) -> dict[str, Any]:
    call: dict[str, Any] = client.get("/api/calls?limit=1").json()["calls"][0]
    return call


def test_search_pages_and_sorts(client: TestClient, out: Path) -> None:
    entries = load_index(out)
    r = client.get("/api/calls", params={"limit": 3, "sort": "start", "order": "asc"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == len(entries) == 7 and len(body["calls"]) == 3
    seen = [c["id"] for c in body["calls"]]
    while body["next"]:
        body = client.get("/api/calls", params={"limit": 3, "sort": "start", "order": "asc",
                                                "cursor": body["next"]}).json()
        seen += [c["id"] for c in body["calls"]]
    assert len(seen) == len(set(seen)) == 7
    starts = [c["start"] for c in client.get("/api/calls?sort=start&order=asc").json()["calls"]]
    assert starts == sorted(starts)
    lengths = [c["duration"] for c in
               client.get("/api/calls?sort=duration&order=desc").json()["calls"]]
    assert lengths == sorted(lengths, reverse=True)
    one = entries[2]
    found = client.get("/api/calls", params={"party": one["callee"]}).json()
    assert one["call_id"] in {c["call_id"] for c in found["calls"]}
    lo = client.get("/api/calls", params={"mos_min": 0, "mos_max": 5}).json()["total"]
    assert lo == 7
    assert client.get("/api/calls", params={"cidr": "0.0.0.0/0"}).json()["total"] == 7
    assert client.get("/api/calls", params={"from": "2030-01-01T00:00:00Z"}).json()["total"] == 0


@pytest.mark.parametrize("params, word", [
    ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"sort": "size"}, "sort"),
    ({"order": "up"}, "order"), ({"mos_min": 7}, "mos_min"), ({"cidr": "300.1.1.1"}, "cidr"),
    ({"from": "yesterday"}, "from"), ({"cursor": "zzz"}, "cursor"),
    ({"party_mode": "regex", "party": "1"}, "party_mode"), ({"q": "ab"}, "q"),
    ({"duration_min": "long"}, "duration_min"), ({"side": "both"}, "side"),
])
def test_bad_parameters_get_400_naming_them(client: TestClient, params: dict[str, Any],
                                            word: str) -> None:
    r = client.get("/api/calls", params=params)
    assert r.status_code == 400, r.text
    assert word in r.json()["detail"]


@pytest.mark.parametrize("path", [
    "/api/calls/no-such-call", "/api/calls/..%2F..%2Fetc%2Fpasswd",
    "/api/calls/%2E%2E/view", "/api/calls/x/../../etc/passwd", "/api/calls/.hidden",
    "/api/calls/..%5C..%5Cwindows/files/audio", "/calls/nope",
])
def test_unknown_and_path_like_ids_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_call_detail_view_and_sip(client: TestClient, out: Path) -> None:
    c = _first(client)
    d = client.get(f"/api/calls/{c['id']}").json()
    assert d["entry"]["call_id"] == c["call_id"]
    assert d["summary"]["call"]["call_id"] == c["call_id"]
    view = client.get(f"/api/calls/{c['id']}/view").json()
    assert view["buckets"] > 0 and len(view["quality"]) == 2 and view["sip"]
    sip = client.get(f"/api/calls/{c['id']}/sip").json()
    assert [m["label"] for m in sip][:1] == ["INVITE"]
    assert sip[0]["text"].startswith("INVITE ") and sip[0]["time"].endswith("Z")


def test_files_and_ranges(client: TestClient, out: Path) -> None:
    c = _first(client)
    wav = (out / c["audio"]).read_bytes()
    r = client.get(f"/api/calls/{c['id']}/files/audio")
    assert r.status_code == 200 and r.content == wav
    r = client.get(f"/api/calls/{c['id']}/files/audio", headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == wav[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(wav)}"
    r = client.get(f"/api/calls/{c['id']}/files/audio", headers={"Range": "bytes=-50"})
    assert r.status_code == 206 and r.content == wav[-50:]
    for kind, name in (("metadata", c["metadata"]), ("summary", c["summary"]),
                       ("sip_pcap", c["sip_pcap"]), ("view", c["view"])):
        r = client.get(f"/api/calls/{c['id']}/files/{kind}")
        assert r.status_code == 200 and r.content == (out / name).read_bytes(), kind
    assert client.get(f"/api/calls/{c['id']}/files/passwd").status_code == 404
    assert client.get(f"/api/calls/{c['id']}/files/evidence_pcap").status_code == 404


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_sip_pcap_opens_in_tshark_with_the_calls_messages(client: TestClient,
                                                          tmp_path: Path) -> None:
    c = _first(client)
    p = tmp_path / "sip.pcap"
    p.write_bytes(client.get(f"/api/calls/{c['id']}/files/sip_pcap").content)
    r = subprocess.run(["tshark", "-r", str(p), "-Y", "sip", "-T", "fields", "-e",
                        "sip.Call-ID", "-e", "sip.CSeq.method"], capture_output=True,
                       text=True, check=True)
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert rows and {cid for cid, _m in rows} == {c["call_id"]}
    assert {"INVITE", "ACK", "BYE"} <= {m for _c, m in rows}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_audio_as_stored_and_transcoded(client: TestClient, out: Path, tmp_path: Path) -> None:
    c = _first(client)
    r = client.get(f"/api/calls/{c['id']}/audio")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content == (out / c["audio"]).read_bytes()
    r = client.get(f"/api/calls/{c['id']}/audio", params={"format": "mp3"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    (tmp_path / "a.mp3").write_bytes(r.content)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name",
                            "-of", "csv=p=0", str(tmp_path / "a.mp3")], capture_output=True,
                           text=True, check=True)
    assert probe.stdout.strip() == "mp3"
    r = client.get(f"/api/calls/{c['id']}/audio", params={"format": "mp3"},
                   headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and len(r.content) == 10
    bad = client.get(f"/api/calls/{c['id']}/audio", params={"format": "aiff"})
    assert bad.status_code == 400 and "format" in bad.json()["detail"]


def test_zip_and_csv(client: TestClient, out: Path) -> None:
    c = _first(client)
    r = client.get(f"/api/calls/{c['id']}/zip")
    names = set(zipfile.ZipFile(io.BytesIO(r.content)).namelist())
    stem = c["id"]
    assert {f"{stem}.wav", f"{stem}.xml", f"{stem}.json", f"{stem}.sip.pcap",
            f"{stem}.view.json"} <= names
    r = client.get("/api/calls.csv", params={"codec": "PCMU"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    total = client.get("/api/calls", params={"codec": "PCMU"}).json()["total"]
    assert r.headers["content-type"].startswith("text/csv") and len(rows) == total > 0
    assert all("PCMU/8000" in row["codecs"] for row in rows)


def test_overview(client: TestClient, out: Path) -> None:
    o = client.get("/api/overview").json()
    entries = load_index(out)
    assert o["calls"] == len(entries)
    assert o["answered"] == sum(e["status"] == "completed" for e in entries)
    assert sum(h["calls"] for h in o["per_period"]["bins"]) == len(entries)
    assert o["per_period"]["unit"] == "hour"  # the capture spans less than a week
    day = client.get("/api/overview", params={"from": "2026-01-01T00:00:00Z",
                                              "to": "2026-02-01T00:00:00Z"}).json()
    assert day["per_period"]["unit"] == "day" and len(day["per_period"]["bins"]) == 31
    assert sum(b["calls"] for b in o["mos_histogram"]) == len(entries)
    worst = [w["mos_min"] for w in o["worst"]]
    assert worst == sorted(worst)
    assert client.get("/api/overview", params={"from": "bad"}).status_code == 400


def test_pages_render(client: TestClient) -> None:
    c = _first(client)
    for path in ("/", "/overview", f"/calls/{c['id']}", "/static/app.js",
                 "/static/style.css"):
        assert client.get(path).status_code == 200, path


def test_openapi_document_validates_and_lists_every_route(client: TestClient) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json()
    validate(doc)
    api = {r.path for r in client.app.routes  # type: ignore[attr-defined]
           if getattr(r, "path", "").startswith("/api/")}
    assert api and api == set(doc["paths"])


def test_only_loopback_without_users(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    from calltap.accounts import Accounts
    from calltap.serve import access_path, serve

    assert serve(str(tmp_path), "0.0.0.0:8080") == 2
    assert not (tmp_path / ".calltap").exists()  # refusing writes nothing
    Accounts(access_path(str(tmp_path))).close()  # an access file without users
    assert serve(str(tmp_path), "0.0.0.0:8080") == 2
    # behind a proxy on loopback, everyone reaching the proxy would be local
    assert serve(str(tmp_path), "127.0.0.1:8080", trusted_proxy="127.0.0.1") == 2


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_a_split_recording_plays_as_one_two_channel_file(tmp_path: Path) -> None:
    import numpy as np

    from tests.helpers import read_wav

    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=2.0, seed=3))
    run_import([pcap], tmp_path / "out", jobs=1, layout="split")
    client = TestClient(create_app(str(tmp_path / "out")))
    c = _first(client)
    assert len(c["audio_files"]) == 2
    r = client.get(f"/api/calls/{c['id']}/audio")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    (tmp_path / "both.wav").write_bytes(r.content)
    both, _ = read_wav(tmp_path / "both.wav")
    caller, _ = read_wav(tmp_path / "out" / c["audio_files"][0])
    callee, _ = read_wav(tmp_path / "out" / c["audio_files"][1])
    assert both.shape[1] == 2
    assert np.array_equal(both[:, 0], caller[:, 0]) and np.array_equal(both[:, 1], callee[:, 0])
