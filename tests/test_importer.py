"""The import shell: timers driven by capture time, several files, flows, bounds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from calltap.config import Config
from calltap.generate import GenOptions, generate
from tests.helpers import load_index, load_summary, pcap_bytes, run_import, sip_invite, udp4

S = 1_000_000_000


def rtp(seq: int) -> bytes:
    return bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + \
        b"\0\0\0\7" + b"\x55" * 160


def test_inactivity_timeout_in_capture_time(tmp_path: Path) -> None:
    frames = [(0, udp4("192.0.2.1", 5060, "192.0.2.2", 5060, sip_invite(port=4000)))]
    frames += [(S + k * 20_000_000, udp4("192.0.2.9", 7000, "192.0.2.1", 4000, rtp(k)))
               for k in range(50)]
    # much later, unrelated traffic moves capture time on
    frames.append((100 * S, udp4("203.0.113.1", 1, "203.0.113.2", 2, b"x")))
    pcap = tmp_path / "t.pcap"
    pcap.write_bytes(pcap_bytes(frames))
    imp = run_import([pcap], tmp_path / "o", inactivity_timeout=30.0)
    (entry,) = load_index(tmp_path / "o")
    assert entry["end_reason"] == "rtp-timeout" and entry["status"] == "timeout"
    summary = load_summary(tmp_path / "o", entry)
    # media to the caller's announced address from an unannounced one: the callee's
    assert summary["directions"][1]["packets"] == 50
    assert summary["directions"][1]["flows"] == ["192.0.2.9:7000 -> 192.0.2.1:4000"]
    assert imp.drops["udp_not_sip_or_known_media"] == 1


def test_several_files_are_one_stream(tmp_path: Path) -> None:
    whole = tmp_path / "w.pcap"
    generate(str(whole), GenOptions(calls=2, duration=2.0, seed=2))
    data = whole.read_bytes()
    # split at a record boundary in the middle
    off, cut = 24, 24
    while off < len(data) // 2:
        cut = off
        off += 16 + int.from_bytes(data[off + 8: off + 12], "little")
    (tmp_path / "a.pcap").write_bytes(data[:cut])
    (tmp_path / "b.pcap").write_bytes(data[:24] + data[cut:])
    run_import([tmp_path / "a.pcap", tmp_path / "b.pcap"], tmp_path / "o1", jobs=1)
    run_import([whole], tmp_path / "o2", jobs=2)
    one = sorted(load_index(tmp_path / "o1"), key=lambda e: e["call_id"])
    two = sorted(load_index(tmp_path / "o2"), key=lambda e: e["call_id"])
    assert one == two and all(e["status"] == "completed" for e in one)
    for e in one:
        audio = e["audio"]
        assert (tmp_path / "o1" / audio).read_bytes() == (tmp_path / "o2" / audio).read_bytes()


def test_spool_directory_removed(tmp_path: Path) -> None:
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=1.0))
    run_import([pcap], tmp_path / "o")
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".spool")]


def test_importing_again_does_not_repeat_index_lines(tmp_path: Path) -> None:
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=2, duration=1.0))
    run_import([pcap], tmp_path / "o")
    first = load_index(tmp_path / "o")
    run_import([pcap], tmp_path / "o")
    assert load_index(tmp_path / "o") == first and len(first) == 2


def test_rtp_without_signalling_becomes_one_call_with_both_directions(tmp_path: Path) -> None:
    a, b = ("192.0.2.1", 20000), ("198.51.100.2", 30000)
    frames = []
    for k in range(100):
        frames.append((k * 20_000_000, udp4(*a, *b, rtp(k))))
        if k >= 10:  # the answer starts later, from the other end, with its own SSRC
            back = bytearray(rtp(k + 500))
            back[8:12] = b"\0\0\0\x09"
            frames.append((k * 20_000_000 + 5_000_000, udp4(*b, *a, bytes(back))))
    # UDP on high ports that is not RTP (version 0) and a 4-packet RTP burst: not promoted
    frames += [(3 * S + k, udp4("192.0.2.7", 4000, "192.0.2.8", 4002, bytes([0, k]) * 20))
               for k in range(10)]
    frames += [(3 * S + k, udp4("192.0.2.7", 6000, "192.0.2.8", 6002, rtp(k))) for k in range(4)]
    pcap = tmp_path / "rtp.pcap"
    pcap.write_bytes(pcap_bytes(sorted(frames)))
    imp = run_import([pcap], tmp_path / "o")
    (e,) = load_index(tmp_path / "o")
    assert e["status"] == "unsignalled" and e["caller"] == "rtp:192.0.2.1:20000"
    assert e["packets"] == [100, 90] and e["codecs"] == ["PCMU/8000"]
    assert imp.drops["udp_not_sip_or_known_media"] == 10


def _to_ipv6(frame: bytes) -> bytes:
    """The same UDP datagram over IPv6 (2001:db8::a.b.c.d for a.b.c.d), SDP included."""
    import ipaddress
    import re
    import struct as st

    prefix = bytes.fromhex("20010db8000000000000000000000000")[:12]
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    src, dst = prefix + ip[12:16], prefix + ip[16:20]
    udp = ip[ihl:]
    payload = udp[8:]
    if b"IN IP4 " in payload:
        def v6(m: re.Match[bytes]) -> bytes:
            addr = ipaddress.IPv6Address(prefix + ipaddress.IPv4Address(m.group(1).decode()).packed)
            return b"IN IP6 " + str(addr).encode()

        head, _, body = payload.partition(b"\r\n\r\n")
        body = re.sub(rb"IN IP4 ([0-9.]+)", v6, body)
        head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head)
        payload = head + b"\r\n\r\n" + body
        udp = udp[:4] + st.pack("!H", 8 + len(payload)) + udp[6:8] + payload
    hdr = st.pack("!IHBB", 0x60000000, len(udp), 17, 64) + src + dst
    return frame[:12] + b"\x86\xdd" + hdr + udp


def _fragment_ipv6(frame: bytes, size: int) -> list[bytes]:
    import struct as st

    hdr, body = frame[14:54], frame[54:]
    out = []
    for off in range(0, len(body), size):
        chunk = body[off: off + size]
        more = 1 if off + size < len(body) else 0
        frag = st.pack("!BBHI", 17, 0, off | more, 0xCAFE)
        h = hdr[:4] + st.pack("!H", 8 + len(chunk)) + bytes([44]) + hdr[7:]
        out.append(frame[:14] + h + frag + chunk)
    return out


def test_ipv6_fragmented_invite_records_like_unfragmented_ipv6(tmp_path: Path) -> None:
    from capture.pcapfile import open_capture

    clean = tmp_path / "v4.pcap"
    generate(str(clean), GenOptions(calls=2, duration=2.0, seed=19))
    v6 = [(ts, _to_ipv6(f)) for ts, _l, f in open_capture(str(clean))]
    frag: list[tuple[int, bytes]] = []
    for ts, f in v6:
        if b"INVITE sip:" in f[62:80]:
            pieces = _fragment_ipv6(f, 200)
            assert len(pieces) > 1
            frag += [(ts, p) for p in reversed(pieces)]
        else:
            frag.append((ts, f))
    (tmp_path / "v6.pcap").write_bytes(pcap_bytes(v6))
    (tmp_path / "v6frag.pcap").write_bytes(pcap_bytes(frag))
    run_import([tmp_path / "v6.pcap"], tmp_path / "a")
    imp = run_import([tmp_path / "v6frag.pcap"], tmp_path / "b")
    a = sorted(load_index(tmp_path / "a"), key=lambda e: e["call_id"])
    b = sorted(load_index(tmp_path / "b"), key=lambda e: e["call_id"])
    assert imp.reassembled == 2 and a == b and len(a) == 2
    assert all(e["audio"] and e["caller"].startswith("sip:caller") for e in a)
    for e in a:
        audio = e["audio"]
        assert (tmp_path / "a" / audio).read_bytes() == (tmp_path / "b" / audio).read_bytes()


def test_a_capture_indexed_in_small_windows_records_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapped capture is indexed a window at a time: routes, duplicates (two mirror
    copies of a packet either side of a window's edge) and calls carry over, so the
    recordings equal those of one window."""
    import sys

    from calltap import importer
    from calltap.mirror import VARIANTS
    from capture.pcapfile import open_capture

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from compare_import import compare

    clean = tmp_path / "clean.pcap"
    generate(str(clean), GenOptions(calls=3, duration=4.0, seed=12, loss=0.01, rtcp=True))
    frames = [(t, f) for t, _l, f in open_capture(str(clean))]
    pcap = tmp_path / "twice.pcap"
    pcap.write_bytes(pcap_bytes(VARIANTS["duplicated-mirror"](frames)))
    whole = run_import([pcap], tmp_path / "whole", jobs=1)
    monkeypatch.setattr(importer, "INDEX_WINDOW", 97)
    windows = run_import([pcap], tmp_path / "windows", jobs=1)
    assert windows.drops == whole.drops and whole.drops["duplicate_packet"] > 1000
    assert len(load_index(tmp_path / "whole")) == 3
    assert compare(tmp_path / "whole", tmp_path / "windows") == []


def test_windows_decoded_ahead_are_the_windows_in_order(tmp_path: Path) -> None:
    import numpy as np

    from calltap.importer import _decoded_ahead
    from capture.errors import CaptureError
    from capture.index import index_windows
    from capture.vector import decode_udp

    pcap = Path(__file__).resolve().parent.parent / "pcaps" / "sample-calls.pcap"
    plain = [(i.first, decode_udp(i).dport) for i in index_windows(str(pcap), 1000)]
    ahead = [(i.first, u.dport) for i, u in _decoded_ahead(index_windows(str(pcap), 1000))]
    assert len(plain) > 2 and len(ahead) == len(plain)
    assert all(a[0] == p[0] and np.array_equal(a[1], p[1]) for a, p in
               zip(ahead, plain, strict=True))
    # an error indexing ahead reaches the caller, as it would without the thread
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\xd4\xc3\xb2\xa1\x03\x00" + bytes(18))
    with pytest.raises(CaptureError, match="bad.pcap"):
        list(_decoded_ahead(index_windows(str(bad), 1000)))


def test_calls_go_to_writers_in_batches_and_one_failing_call_costs_only_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short calls are handed to the writer processes several at a time; a call that fails
    to write is reported, and the others of its batch are written."""
    from calltap import importer
    from writer.job import write_call

    pcap = tmp_path / "short.pcap"
    generate(str(pcap), GenOptions(calls=12, duration=0.5, seed=5))
    batches: list[int] = []

    def failing(record: Any, spool: Any, out: str, options: Any) -> Any:
        if record.call.call_id.startswith(("gen-5-3@", "gen-5-8@")):
            raise RuntimeError(f"disk on fire for {record.call.call_id}")
        return write_call(record, spool, out, options)

    # the writers are forked when the import starts: they inherit the failing write
    monkeypatch.setattr(importer, "write_call", failing)
    monkeypatch.setattr(importer, "WRITE_BATCH_CALLS", 4)
    monkeypatch.setattr(importer, "WRITE_BATCH_WAIT_S", 3600.0)
    imp = importer.Importer(Config(out=str(tmp_path / "out"), jobs=2))
    pool = imp._pool
    assert pool is not None
    submit = pool.submit
    def counted(fn: Any, jobs: list[Any], *args: Any) -> Any:
        batches.append(len(jobs))
        return submit(fn, jobs, *args)

    monkeypatch.setattr(pool, "submit", counted)
    imp.import_file(str(pcap))
    imp.finish()
    assert sum(batches) == 12 and max(batches) == 4 and len(batches) == 3
    assert imp.calls_written == 10 and imp.error_count == 2
    assert all("disk on fire" in e for e in imp.errors)
    ids = sorted(e["call_id"] for e in load_index(tmp_path / "out"))
    assert len(ids) == 10 and not any(i.startswith(("gen-5-3@", "gen-5-8@")) for i in ids)


def test_a_call_with_much_media_goes_to_a_writer_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calltap import importer

    pcap = tmp_path / "calls.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=2.0, seed=6))
    monkeypatch.setattr(importer, "WRITE_BATCH_PACKETS", 150)  # a call: 2 x 100 packets
    monkeypatch.setattr(importer, "WRITE_BATCH_WAIT_S", 3600.0)
    imp = importer.Importer(Config(out=str(tmp_path / "out"), jobs=2))
    assert imp._pool is not None
    submit, batches = imp._pool.submit, []

    def counted(fn: Any, jobs: list[Any], *args: Any) -> Any:
        batches.append(len(jobs))
        return submit(fn, jobs, *args)

    monkeypatch.setattr(imp._pool, "submit", counted)
    imp.import_file(str(pcap))
    imp.finish()
    assert batches == [1, 1, 1] and imp.calls_written == 3


def test_writers_run_below_the_process_that_reads(tmp_path: Path) -> None:
    from calltap import importer

    imp = importer.Importer(Config(out=str(tmp_path / "out"), jobs=2))
    try:
        assert imp._pool is not None
        mine = os.nice(0)
        assert imp._pool.submit(os.nice, 0).result() == min(19, mine + importer.WRITER_NICE)
    finally:
        imp.finish()


def test_a_catalog_that_cannot_be_opened_costs_no_call(tmp_path: Path) -> None:
    """The catalog opens beside the first packets' parsing: where it cannot be, every call
    is still written and indexed in index.jsonl, and the import says so once."""
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=1.0))
    (tmp_path / "o" / "catalog.sqlite").mkdir(parents=True)  # not a database file
    imp = run_import([pcap], tmp_path / "o")
    assert len(load_index(tmp_path / "o")) == 3 and imp.calls_written == 3
    (warning,) = [w for w in imp.warnings if w.startswith("catalog:")]
    assert "not indexed for search" in warning
