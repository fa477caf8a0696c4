from __future__ import annotations

import json
import os
from pathlib import Path

from writer.output import append_index, call_stem, tmp_name, write_atomic
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
