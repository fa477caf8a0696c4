from __future__ import annotations

import io

import pytest

from capture.errors import CaptureFormatError
from capture.pcapfile import CaptureReader, open_capture
from tests.helpers import pcap_bytes, pcapng_bytes, udp4

FRAMES = [
    (1_600_000_000_123_456_000, udp4("192.0.2.1", 1, "192.0.2.2", 2, b"one")),
    (1_600_000_001_000_001_000, udp4("192.0.2.1", 1, "192.0.2.2", 2, b"two" * 50)),
    (1_600_000_002_999_999_000, udp4("192.0.2.1", 1, "192.0.2.2", 2, b"three")),
]


def read(data: bytes) -> tuple[list[tuple[int, int, bytes]], CaptureReader]:
    r = CaptureReader(io.BytesIO(data), "mem.pcap")
    return list(r), r


@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_variants(nanosecond: bool, big_endian: bool) -> None:
    pkts, r = read(pcap_bytes(FRAMES, nanosecond=nanosecond, big_endian=big_endian))
    assert r.format == "pcap"
    assert [(ts, fr) for ts, _l, fr in pkts] == FRAMES
    assert all(link == 1 for _ts, link, _fr in pkts)
    assert not r.truncated


def test_nanosecond_precision_kept() -> None:
    frames = [(1_600_000_000_123_456_789, b"x" * 20)]
    pkts, _ = read(pcap_bytes(frames, nanosecond=True))
    assert pkts[0][0] == 1_600_000_000_123_456_789


def test_pcap_every_prefix_keeps_whole_records() -> None:
    data = pcap_bytes(FRAMES)
    boundaries = [24]
    for _ts, fr in FRAMES:
        boundaries.append(boundaries[-1] + 16 + len(fr))
    for cut in range(len(data) + 1):
        if cut < 24:
            with pytest.raises(CaptureFormatError):
                read(data[:cut])
            continue
        pkts, r = read(data[:cut])
        whole = sum(1 for b in boundaries[1:] if b <= cut)
        assert len(pkts) == whole
        assert r.truncated == (cut not in boundaries)


def test_pcapng_interfaces_with_different_link_types_and_resolutions() -> None:
    raw_ip = FRAMES[0][1][14:]
    data = pcapng_bytes(
        [(1, None), (101, 9)],  # Ethernet in microseconds, raw IP in nanoseconds
        [(0, 1_600_000_000_123_456, FRAMES[0][1]), (1, 1_600_000_000_123_456_789, raw_ip)],
        simple=FRAMES[2][1],
    )
    pkts, r = read(data)
    assert r.format == "pcapng"
    assert pkts[0] == (1_600_000_000_123_456_000, 1, FRAMES[0][1])
    assert pkts[1] == (1_600_000_000_123_456_789, 101, raw_ip)
    assert pkts[2][1:] == (1, FRAMES[2][1])


def test_pcapng_every_prefix() -> None:
    data = pcapng_bytes([(1, None)], [(0, i * 1000, fr) for i, (_t, fr) in enumerate(FRAMES)])
    for cut in range(len(data) + 1):
        try:
            pkts, _r = read(data[:cut])
        except CaptureFormatError:
            assert cut < 28  # no complete section header
            continue
        assert len(pkts) <= len(FRAMES)
        assert [fr for _t, _l, fr in pkts] == [fr for _t, fr in FRAMES[: len(pkts)]]


def test_pcapng_packet_on_undeclared_interface_is_skipped() -> None:
    data = pcapng_bytes([(1, None)], [(3, 0, FRAMES[0][1]), (0, 5, FRAMES[1][1])])
    pkts, r = read(data)
    assert len(pkts) == 1 and r.skipped_blocks == 1


@pytest.mark.parametrize(
    "data",
    [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"hello world, not a capture", b"\xd4\xc3"],
)
def test_not_a_capture(data: bytes) -> None:
    with pytest.raises(CaptureFormatError, match="mem.pcap"):
        read(data)


def test_absurd_record_length() -> None:
    data = pcap_bytes(FRAMES[:1])
    data = data[:32] + (10_000_000).to_bytes(4, "little") + data[36:]
    with pytest.raises(CaptureFormatError, match="claims"):
        read(data)


def test_open_capture_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CaptureFormatError, match="missing.pcap: cannot open"):
        open_capture(str(tmp_path / "missing.pcap"))
    with pytest.raises(CaptureFormatError, match="cannot open"):
        open_capture(str(tmp_path))


def test_streaming_reads_in_chunks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    frames = [(i * 1000, udp4("192.0.2.1", 1, "192.0.2.2", 2, bytes(1000))) for i in range(3000)]
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_bytes(frames))
    r = open_capture(str(path))
    n = sum(1 for _ in r)
    assert n == 3000
    assert r.bytes_read == path.stat().st_size


def test_truncated_pcapng_section_header() -> None:
    data = pcapng_bytes([(1, None)], [])
    with pytest.raises(CaptureFormatError, match="section header is truncated"):
        read(data[:20])
