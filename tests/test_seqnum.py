from __future__ import annotations

from writer.seqnum import Extender, seq_delta, ts_delta


def test_deltas_wrap() -> None:
    assert seq_delta(2, 65535) == 3 and seq_delta(65535, 2) == -3
    assert seq_delta(0, 32768) == -32768
    assert ts_delta(5, 0xFFFFFFF0) == 21 and ts_delta(0xFFFFFFF0, 5) == -21


def test_extender_through_wrap_and_reorder() -> None:
    e = Extender(16)
    seqs = [65533, 65534, 65535, 1, 0, 2, 3]
    assert [e.extend(s) for s in seqs] == [65533, 65534, 65535, 65537, 65536, 65538, 65539]
    t = Extender(32)
    assert t.extend(0xFFFFFF00) == 0xFFFFFF00 and t.extend(0x10) == 0x100000010
