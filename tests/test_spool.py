"""The per-call spool: records come back as written, a torn tail (a crash mid-write) is
dropped, and the memory bound writes every buffer out."""

from __future__ import annotations

from pathlib import Path

import pytest

from capture import spool
from capture.spool import SpoolSet, read_spool


def test_round_trip_and_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "FLUSH_BYTES", 100)
    s = SpoolSet(str(tmp_path / "sp"))
    recs = [(i * 10, i % 3, bytes([i]) * (i + 1)) for i in range(50)]
    for ts, flow, payload in recs:
        s.add(1, ts, flow, payload)
    path = s.close_call(1)
    assert path is not None
    assert list(read_spool(path)) == recs
    assert s.close_call(2) is None  # a call that never had media has no spool


def test_a_restarted_set_finds_an_earlier_spool_a_fresh_one_never_looks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = SpoolSet(str(tmp_path / "sp"))
    before.add(3, 10, 0, b"x")
    before.close_all()  # the process stops with call 3 open
    after = SpoolSet(str(tmp_path / "sp"))
    assert after.close_call(3) == before.path(3)  # taken up after the restart
    fresh = SpoolSet(str(tmp_path / "new"), fresh=True)
    fresh.add(1, 10, 0, b"y")

    def no_stat(path: str) -> bool:
        raise AssertionError(f"looked for {path}")

    monkeypatch.setattr(spool.os.path, "exists", no_stat)
    assert fresh.close_call(1) == fresh.path(1)
    assert fresh.close_call(2) is None


def test_torn_last_record_is_ignored(tmp_path: Path) -> None:
    s = SpoolSet(str(tmp_path))
    s.add(7, 1, 0, b"abc")
    s.add(7, 2, 1, b"defg")
    path = s.close_call(7)
    assert path is not None
    data = Path(path).read_bytes()
    for cut in range(1, len(data) - spool.REC.size - 3):
        Path(path).write_bytes(data[:-cut])
        assert list(read_spool(path)) == [(1, 0, b"abc")]


def test_memory_bound_flushes_everything(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "MAX_BUFFERED", 1000)
    s = SpoolSet(str(tmp_path))
    for i in range(100):
        s.add(i, i, 0, b"x" * 20)
    assert s._buffered < 1000  # noqa: SLF001 - the bound is the point
    assert sum(len(list(read_spool(p))) for p in map(str, tmp_path.iterdir())) > 60


def test_sealed_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sealed spool holds no payload in plain; its key opens it, frame by frame, and a
    frame torn by a crash is left out; a restarted process goes on with the same key."""
    from writer.columns import spool_columns
    from writer.errors import SpoolError

    monkeypatch.setattr(spool, "FLUSH_BYTES", 300)
    s = SpoolSet(str(tmp_path / "sp"), sealed=True)
    payloads = [bytes([0x80, 0]) + bytes([i]) * 170 for i in range(40)]
    for i, p in enumerate(payloads[:30]):
        s.add(7, i * 20_000_000, i % 2, p)
    key = s.key(7)
    assert key is not None and SpoolSet(str(tmp_path / "x")).key(7) is None
    s.flush_all()
    again = SpoolSet(str(tmp_path / "sp"), sealed=True)  # a restarted capture process
    again.adopt(7, key)
    for i, p in enumerate(payloads[30:], 30):
        again.add(7, i * 20_000_000, i % 2, p)
    path = again.close_call(7)
    assert path is not None and again.release(7) == key and again.release(7) is None
    data = Path(path).read_bytes()
    assert not any(p[2:40] in data for p in payloads)
    cols = spool_columns(path, key)
    assert [cols.payload(i) for i in range(len(cols))] == payloads
    assert cols.ts.tolist() == [i * 20_000_000 for i in range(40)]
    Path(path).write_bytes(data[:-5])  # a torn last frame
    assert 0 < len(spool_columns(path, key)) < 40
    with pytest.raises(SpoolError, match="does not open"):
        spool_columns(path, bytes(32))


def test_open_files_are_bounded_and_closed_with_the_call(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Files stay open between flushes up to ``max_open`` (the least recently flushed is
    closed); a call's records still all come back, and closing the call closes its file."""
    import os

    monkeypatch.setattr(spool, "FLUSH_BYTES", 1)  # every record written at once
    s = SpoolSet(str(tmp_path))
    s.max_open = 3
    fds = len(os.listdir("/proc/self/fd"))
    for round_ in range(4):
        for serial in range(6):
            s.add(serial, round_, serial, bytes([round_]) * 5)
    assert len(s._fds) == 3 and len(os.listdir("/proc/self/fd")) == fds + 3
    for serial in range(6):
        path = s.close_call(serial)
        assert path is not None
        assert list(read_spool(path)) == [(r, serial, bytes([r]) * 5) for r in range(4)]
    assert not s._fds and len(os.listdir("/proc/self/fd")) == fds
    s.add(9, 1, 0, b"x")
    s.close_all()
    assert not s._fds and list(read_spool(s.path(9))) == [(1, 0, b"x")]
