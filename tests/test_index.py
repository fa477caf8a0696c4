"""The whole-file index gives the streaming reader's packets, for every format."""

from __future__ import annotations

from pathlib import Path

import pytest

from capture.errors import CaptureFormatError
from capture.index import index_capture, index_windows
from capture.pcapfile import close_capture, open_capture
from tests.helpers import ALL_SHARED, need_shared, pcap_bytes, pcapng_bytes, udp4

FRAMES = [
    (1_600_000_000_123_456_000, udp4("192.0.2.1", 1, "192.0.2.2", 2, b"one")),
    (1_600_000_001_000_001_000, udp4("192.0.2.1", 1, "192.0.2.2", 2, b"two" * 50)),
    (1_600_000_002_999_999_000, udp4("192.0.2.1", 1, "192.0.2.2", 2, b"three")),
]


def indexed(path: Path) -> list[tuple[int, int, bytes]]:
    ix = index_capture(str(path))
    try:
        return [(int(ix.ts_ns[i]), int(ix.link[i]), ix.frame(i)) for i in range(len(ix))]
    finally:
        ix.close()


def streamed(path: Path) -> list[tuple[int, int, bytes]]:
    r = open_capture(str(path))
    try:
        return [(ts, link, bytes(f)) for ts, link, f in r]
    finally:
        close_capture(r)


@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_variants(tmp_path: Path, nanosecond: bool, big_endian: bool) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(pcap_bytes(FRAMES, nanosecond=nanosecond, big_endian=big_endian))
    assert indexed(p) == [(ts, 1, fr) for ts, fr in FRAMES]


def test_pcapng_with_two_link_types(tmp_path: Path) -> None:
    p = tmp_path / "x.pcapng"
    p.write_bytes(pcapng_bytes([(1, None), (101, 9)], [(0, 5, FRAMES[0][1]),
                                                       (1, 7, FRAMES[1][1][14:])]))
    assert indexed(p) == streamed(p)
    assert [link for _t, link, _f in indexed(p)] == [1, 101]


@pytest.mark.parametrize("cut", [24, 25, 39, 40, 41, 100])
def test_truncated_file_keeps_the_records_before_the_cut(tmp_path: Path, cut: int) -> None:
    data = pcap_bytes(FRAMES)
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:cut])
    ix = index_capture(str(p))
    whole = sum(1 for k in range(1, 4) if len(pcap_bytes(FRAMES[:k])) <= cut)
    assert len(ix) == whole
    assert ix.truncated == (cut != 24 and cut not in (len(pcap_bytes(FRAMES[:k]))
                                                      for k in range(4)))
    ix.close()


def test_corrupt_record_length_is_one_line_naming_the_file(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(FRAMES))
    data[24 + 8:24 + 12] = (10_000_000).to_bytes(4, "little")
    p = tmp_path / "bad.pcap"
    p.write_bytes(bytes(data))
    with pytest.raises(CaptureFormatError, match="bad.pcap: record at byte 24"):
        index_capture(str(p))


def test_not_a_capture(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello, not a capture\n")
    with pytest.raises(CaptureFormatError, match="notes.txt"):
        index_capture(str(p))


@pytest.mark.parametrize("name", ALL_SHARED)
def test_shared_captures_index_as_they_stream(name: str) -> None:
    path = need_shared() / name
    assert indexed(path) == streamed(path)


def test_windows_with_a_small_first_one_cover_the_capture_in_order(tmp_path: Path) -> None:
    frames = [(1_600_000_000_000_000_000 + k * 20_000_000,
               udp4("192.0.2.1", 4000, "192.0.2.2", 5000, bytes([k % 256]) * (12 + k % 7)))
              for k in range(1000)]
    p = tmp_path / "w.pcap"
    p.write_bytes(pcap_bytes(frames))
    sizes, firsts, got = [], [], []
    for ix in index_windows(str(p), 300, 50):
        sizes.append(len(ix))
        firsts.append(ix.first)
        got += [(int(ix.ts_ns[i]), int(ix.link[i]), ix.frame(i)) for i in range(len(ix))]
    assert sizes == [50, 300, 300, 300, 50] and firsts == [0, 50, 350, 650, 950]
    assert got == streamed(p)
