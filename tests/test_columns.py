"""Media columns: the batch RTP header parser agrees with parse_rtp packet for packet (every
prefix of packets with CSRCs, an extension and padding included), spool files read back as
written with a torn tail left out, and media in a capture file reads back in place or
gathered."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from capture.spool import REC, SpoolSet
from writer.columns import (
    EXTRA,
    RTP_ERRORS,
    CaptureMedia,
    MediaColumns,
    mapped_capture,
    parse_rtp_columns,
    spool_columns,
)
from writer.errors import RtpError
from writer.rtp import parse_rtp


def columns_of(packets: list[bytes], after: bytes = b"") -> MediaColumns:
    """The packets back to back, then ``after`` (bytes of no packet, as in a capture)."""
    data = b"".join(packets) + after
    off = np.concatenate(([0], np.cumsum([len(p) for p in packets])[:-1])).astype(np.int64)
    n = len(packets)
    return MediaColumns(np.arange(n, dtype=np.int64), np.zeros(n, np.int64), off,
                        np.array([len(p) for p in packets], np.int64),
                        np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8))


def agree(packets: list[bytes]) -> None:
    # without bytes after the last packet, and with enough for every header to be read
    # as a whole row (the fast path)
    for after in (b"", bytes(12)):
        agree_one(packets, after)


def agree_one(packets: list[bytes], after: bytes) -> None:
    got = parse_rtp_columns(columns_of(packets, after))
    for i, p in enumerate(packets):
        try:
            want = parse_rtp(p)
        except RtpError as exc:
            assert RTP_ERRORS[int(got.error[i])] == str(exc), (i, p)
            continue
        assert got.error[i] == 0, (i, p, RTP_ERRORS[int(got.error[i])])
        assert (int(got.pt[i]), int(got.marker[i]), int(got.seq[i]), int(got.ts[i]),
                int(got.ssrc[i]), int(got.start[i]), int(got.end[i])) == want


def test_agrees_with_parse_rtp_on_every_prefix() -> None:
    full = (bytes([0x80 | 0x20 | 0x10 | 2, 0x80 | 8]) + struct.pack("!HII", 7, 160, 0xDEADBEEF)
            + bytes(8) + struct.pack("!HH", 0xBEDE, 1) + bytes(4) + b"audio" + bytes([0, 3]))
    agree([full[:cut] for cut in range(len(full) + 1)])


def test_agrees_with_parse_rtp_on_random_packets() -> None:
    rng = random.Random(4)
    packets = []
    for _ in range(3000):
        p = bytearray(rng.randbytes(rng.randrange(0, 60)))
        if p and rng.random() < 0.7:
            p[0] = 0x80 | (p[0] & 0x3F)  # mostly version 2
        packets.append(bytes(p))
    agree(packets)


def test_spool_round_trip_and_torn_tail(tmp_path: Path) -> None:
    spool = SpoolSet(str(tmp_path))
    recs = [(1000 + i, i % 3, bytes([i]) * (i + 1)) for i in range(40)]
    for ts, flow, payload in recs:
        spool.add(5, ts, flow, payload)
    path = spool.close_call(5)
    assert path is not None
    cols = spool_columns(path)
    assert [(int(cols.ts[i]), int(cols.flow[i]), cols.payload(i)) for i in
            range(len(cols))] == recs
    Path(path).write_bytes(Path(path).read_bytes()[:-3])
    assert len(spool_columns(path)) == len(recs) - 1
    assert len(spool_columns(None)) == 0


def test_capture_media_in_place_and_with_payloads_beside(tmp_path: Path) -> None:
    f = tmp_path / "cap.bin"
    f.write_bytes(b"....hello....world")
    ts = np.array([1, 2], np.int64)
    flow = np.zeros(2, np.int64)
    plain = CaptureMedia(str(f), ts, flow, np.array([4, 13], np.int64),
                         np.array([5, 5], np.int64), b"")
    cols = plain.columns()
    assert [cols.payload(0), cols.payload(1)] == [b"hello", b"world"]
    mixed = CaptureMedia(str(f), np.array([1, 2, 3], np.int64), np.zeros(3, np.int64),
                         np.array([4, EXTRA, 13], np.int64), np.array([5, 3, 5], np.int64),
                         b"abc")
    cols = mixed.columns()
    assert [cols.payload(i) for i in range(3)] == [b"hello", b"abc", b"world"]


def test_capture_mapping_is_kept_and_follows_a_replaced_file(tmp_path: Path) -> None:
    f = tmp_path / "cap.bin"
    f.write_bytes(bytes(range(256)) * 64)
    a = mapped_capture(str(f), 0, 100)
    b = mapped_capture(str(f), 8000, 16384)
    assert a.base is b.base  # one mapping for every call of the file
    assert bytes(b[8000:8004]) == bytes([64, 65, 66, 67])
    assert len(mapped_capture(str(f), 20000, 10)) == 16384  # ranges past the end are fine
    f.unlink()
    f.write_bytes(b"new contents")
    c = mapped_capture(str(f), 0, 12)
    assert bytes(c) == b"new contents"
    plain = CaptureMedia(str(f), np.array([1], np.int64), np.zeros(1, np.int64),
                         np.array([4], np.int64), np.array([8], np.int64), b"")
    assert plain.columns().payload(0) == b"contents"


def _records_one_by_one(data: bytes) -> list[tuple[int, int, int, int]]:
    """The spool's records read one at a time, as the format defines them."""
    out, pos = [], 0
    while pos + REC.size <= len(data):
        ts, flow, n = REC.unpack_from(data, pos)
        if pos + REC.size + n > len(data):
            break
        out.append((ts, flow, pos + REC.size, n))
        pos += REC.size + n
    return out


@pytest.mark.parametrize("seed", range(12))
def test_spool_records_found_in_runs_as_read_one_by_one(tmp_path: Path, seed: int) -> None:
    """Runs of one size (a stream), sizes changing every record (a variable-rate codec),
    runs broken one record in, empty payloads, and a torn tail at every cut near the end."""
    rng = random.Random(seed)
    data = bytearray()
    while len(data) < 60_000:
        kind = rng.random()
        count = rng.choice([1, 2, 15, 16, 17, 300, 5000]) if kind < 0.6 else rng.randrange(1, 90)
        size = rng.choice([0, 1, 160, 172, 255, 256, 1400])
        for _ in range(count):
            n = size if kind < 0.6 else rng.randrange(0, 400)
            data += REC.pack(rng.randrange(-2**40, 2**62), rng.randrange(65536), n)
            data += rng.randbytes(n)
    for cut in [len(data), *(len(data) - k for k in range(1, 40)), 11, 12, 0]:
        path = tmp_path / f"s{cut}.spool"
        path.write_bytes(bytes(data[:cut]))
        cols = spool_columns(str(path))
        want = _records_one_by_one(bytes(data[:cut]))
        got = list(zip(cols.ts.tolist(), cols.flow.tolist(), cols.off.tolist(),
                       cols.length.tolist(), strict=True))
        assert got == want
