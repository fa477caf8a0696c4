from __future__ import annotations

from pathlib import Path

from capture import spool
from capture.spool import SpoolSet, read_spool


def test_round_trip_and_flush(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(spool, "FLUSH_BYTES", 100)
    s = SpoolSet(str(tmp_path / "sp"))
    recs = [(i * 10, i % 3, bytes([i]) * (i + 1)) for i in range(50)]
    for ts, flow, payload in recs:
        s.add("call-1", ts, flow, payload)
    path = s.close_call("call-1")
    assert path is not None
    assert list(read_spool(path)) == recs
    assert s.close_call("never-had-media") is None


def test_torn_last_record_is_ignored(tmp_path: Path) -> None:
    s = SpoolSet(str(tmp_path))
    s.add("k", 1, 0, b"abc")
    s.add("k", 2, 1, b"defg")
    path = s.close_call("k")
    assert path is not None
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-2])
    assert list(read_spool(path)) == [(1, 0, b"abc")]


def test_memory_bound_flushes_everything(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(spool, "MAX_BUFFERED", 1000)
    s = SpoolSet(str(tmp_path))
    for i in range(100):
        s.add(f"call-{i}", i, 0, b"x" * 20)
    assert s._buffered < 1000
