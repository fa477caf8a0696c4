from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from writer import output
from writer.output import append_index, call_stem, json_line, tmp_name, write_atomic
from writer.timefmt import rfc3339


def test_stem_from_time_and_hash_never_header_text() -> None:
    rel, stem = call_stem("../../etc/passwd\x00;rm -rf", 1_700_000_000_123_456_789)
    assert rel == "2023/11/14"
    assert stem.startswith("20231114T221320.123456Z-") and "/" not in stem and "." in stem
    assert all(c.isalnum() or c in "TZ.-" for c in stem)


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    write_atomic(str(p), b"{}")
    assert p.read_bytes() == b"{}"
    assert not os.path.exists(tmp_name(str(p)))


@pytest.mark.parametrize("unnamed", [True, False])
def test_atomic_writes_are_whole_replace_and_leave_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool) -> None:
    """An unnamed file linked under its name, or (a file system without them) a temporary
    name and a rename: either way the file is whole, replaces an older one, and nothing
    else is left in the directory."""
    monkeypatch.setattr(output, "_unnamed_ok", unnamed and output._unnamed_ok)
    # each says whether the name was there before (a call written again)
    assert write_atomic(str(tmp_path / "a.json"), b"{}", durable=False) is False
    assert write_atomic(str(tmp_path / "b.xml"), bytearray(b"<x />" * 1000),
                        durable=True) is False
    assert write_atomic(str(tmp_path / "a.json"), b'{"again": 1}', durable=False) is True
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.xml"]
    assert (tmp_path / "a.json").read_bytes() == b'{"again": 1}'
    assert (tmp_path / "b.xml").read_bytes() == b"<x />" * 1000
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_writes_fall_back_where_unnamed_files_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open
    tmpfile = getattr(os, "O_TMPFILE", 0)

    def no_tmpfile(path: str, flags: int, *args: int, **kw: int) -> int:
        if tmpfile and flags & tmpfile == tmpfile:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(output, "_unnamed_ok", True)
    monkeypatch.setattr(output.os, "open", no_tmpfile)
    assert write_atomic(str(tmp_path / "c.json"), b"[]", durable=False) is False
    assert (tmp_path / "c.json").read_bytes() == b"[]" and os.listdir(tmp_path) == ["c.json"]
    assert output._unnamed_ok is False  # remembered: names and renames from then on
    assert write_atomic(str(tmp_path / "c.json"), b"[1]", durable=False) is True
    with pytest.raises(FileNotFoundError):  # a missing directory is an error either way
        monkeypatch.setattr(output, "_unnamed_ok", True)
        monkeypatch.setattr(output.os, "open", real_open)
        write_atomic(str(tmp_path / "gone" / "d.json"), b"{}", durable=False)


def test_index_lines(tmp_path: Path) -> None:
    append_index(str(tmp_path), {"call_id": "x"})
    append_index(str(tmp_path), {"call_id": "y"})
    lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert [json.loads(x)["call_id"] for x in lines] == ["x", "y"]


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(1_700_000_000_000_001_000) == "2023-11-14T22:13:20.000001Z"
    assert rfc3339(10**30).startswith("9999-12-31")


def test_writeback_is_advice_that_changes_nothing(tmp_path: Path) -> None:
    from writer.output import start_writeback

    f = tmp_path / "call.wav"
    data = os.urandom(1 << 20)
    f.write_bytes(data)
    start_writeback(str(f))
    assert f.read_bytes() == data
    start_writeback(str(tmp_path / "gone.wav"))  # a file already moved on: nothing to do



def _resident_pages(path: Path) -> int:
    """Pages of the file in the page cache: mincore(2) over a mapping of it."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    size = path.stat().st_size
    vec = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        try:
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec)


def test_written_recordings_leave_the_cache_a_few_files_later(tmp_path: Path) -> None:
    from writer import output

    data = os.urandom(1 << 20)
    probe = tmp_path / "probe"
    probe.write_bytes(data)
    fd = os.open(probe, os.O_RDONLY)
    try:  # a file system that keeps pages it was advised to drop cannot show it
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if _resident_pages(probe):
        pytest.skip(f"{tmp_path}: its file system keeps pages advised away (tmpfs?)")
    paths = [tmp_path / f"call{k}.wav" for k in range(output.WRITEBACK_LAG + 2)]
    output._written.clear()
    paths[0].write_bytes(data)
    output.start_writeback(str(paths[0]))  # dirty pages: they stay for now
    os.sync()  # its writeback done, as it is tens of milliseconds later in an import
    assert _resident_pages(paths[0])
    for p in paths[1:]:
        p.write_bytes(data)
        output.start_writeback(str(p))
    assert _resident_pages(paths[0]) == 0  # advised again once written: gone from the cache
    assert len(output._written) == output.WRITEBACK_LAG  # the list of files stays bounded
    assert all(p.read_bytes() == data for p in paths)


def test_json_lines_read_back_as_the_standard_encoder_writes_them() -> None:
    """Compact, one line, keys that are not strings written as strings (as json.dumps
    does), sorted when asked, and what cannot be encoded still an error."""
    doc = {"b": [1, 2.5, None, True], "a": {"x": "é\n"}, 7: {3: "three"}}
    line = json_line(doc)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == json.loads(json.dumps(doc))
    assert json_line({"b": 1, "a": 2}, sort_keys=True) == b'{"a":2,"b":1}\n'
    assert json_line({2: 1, 1: 2}, sort_keys=True) == b'{"1":2,"2":1}\n'
    with pytest.raises(TypeError):
        json_line({"x": object()})
