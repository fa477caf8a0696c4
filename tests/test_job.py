"""The writer job from a hand-made spool: gaps, jumps, SSRC changes, codecs, bounds."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from capture.spool import SpoolSet
from correlate.call import Call, MediaOffer
from tests.helpers import ip4, load_index, load_summary, read_wav, record_of
from writer.g711 import ulaw_encode
from writer.job import write_call

S = 1_000_000_000
T0 = 1_700_000_000 * S
A = (ip4("192.0.2.1"), 4000)
B = (ip4("198.51.100.1"), 6000)


def make_call(tmp: Path, packets: list[tuple[int, int, int, int, int, int]],
              pts: list[str] | None = None) -> tuple[Call, str | None]:
    """packets: (capture offset ns, flow 0=caller->callee 1=back, pt, seq, ts, ssrc)."""
    call = Call("k", "call@test", T0, 1)
    call.caller_uri, call.callee_uri = "sip:a@x", "sip:b@y"
    call.end_ns = T0 + 30 * S
    call.status, call.end_reason = "completed", "bye"
    fmts = pts or ["0", "13", "101"]
    call.offers[0].append(MediaOffer(A[0], A[1], {101: ("telephone-event", 8000, 1)}, fmts,
                                     "sendrecv", 20, T0))
    call.offers[1].append(MediaOffer(B[0], B[1], {}, fmts, "sendrecv", 20, T0))
    call.flows = [(A, B, 1, 0, 0), (B, A, 0, 1, 0)]
    spool = SpoolSet(str(tmp / "spool"))
    level = {0: 1000, 1: -2000}
    for off, flow, pt, seq, ts, ssrc in packets:
        hdr = struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        body = ulaw_encode(np.full(160, level[flow], np.int16)) if pt == 0 else b"\0" * 4
        spool.add(1, T0 + off, flow, hdr + body)
    return call, spool.close_call(1)


def write(tmp: Path, packets: list[tuple[int, int, int, int, int, int]],
          pts: list[str] | None = None) -> tuple[np.ndarray, dict]:  # type: ignore[type-arg]
    call, spool = make_call(tmp, packets, pts)
    out = tmp / "out"
    entry = write_call(record_of(call), spool, str(out)).entry
    assert load_index(out) == [entry]
    audio, _ = read_wav(out / entry["audio"]) if entry["audio"] else (np.zeros((0, 2)), 0)
    return audio, load_summary(out, entry)


def stream(flow: int, n: int, start_ns: int = 0, seq0: int = 100, ts0: int = 5000,
           ssrc: int = 7) -> list[tuple[int, int, int, int, int, int]]:
    return [(start_ns + k * 20_000_000, flow, 0, seq0 + k, ts0 + 160 * k, ssrc) for k in range(n)]


def test_silence_suppression_gap_is_silence_at_the_right_place(tmp_path: Path) -> None:
    pk = stream(0, 50) + [(3 * S + k * 20_000_000, 0, 0, 150 + k, 5000 + 24000 + 160 * k, 7)
                          for k in range(50)]
    audio, summary = write(tmp_path, pk)
    ch = audio[:, 0]
    assert (ch[:8000] != 0).all() and not ch[8000:24000].any() and (ch[24000:32000] != 0).all()
    assert summary["directions"][0]["lost"] == 0 and len(summary["directions"][0]["segments"]) == 1


def test_timestamp_jump_and_ssrc_change_follow_capture_time(tmp_path: Path) -> None:
    pk = (stream(0, 50) + stream(0, 50, start_ns=S, seq0=150, ts0=3_000_000_000)
          + stream(0, 50, start_ns=2 * S, seq0=9, ts0=77, ssrc=8))
    audio, summary = write(tmp_path, pk)
    assert len(audio) == 24000 and (audio[:, 0] != 0).all()
    d = summary["directions"][0]
    assert len(d["segments"]) == 3 and len(d["ssrcs"]) == 2 and d["packets"] == 150


def test_both_directions_share_the_capture_axis(tmp_path: Path) -> None:
    pk = sorted(stream(0, 100) + stream(1, 50, start_ns=S, ssrc=9))
    audio, summary = write(tmp_path, pk)
    assert (audio[:16000, 0] != 0).all()
    assert not audio[:8000, 1].any() and (audio[8000:16000, 1] != 0).all()
    assert summary["audio_start_ns"] == T0


def test_reorder_duplicates_and_late(tmp_path: Path) -> None:
    pk = stream(0, 600)
    a, b = pk[10], pk[11]
    pk[10], pk[11] = (a[0], *b[1:]), (b[0], *a[1:])  # seq 111 arrives before 110
    pk.append((pk[20][0] + 1_000_000, *pk[20][1:]))  # duplicate
    pk.append((11 * S, 0, 0, 100 + 5, 5000 + 160 * 5, 7))  # 11 s late: beyond the window
    audio, summary = write(tmp_path, sorted(pk))
    d = summary["directions"][0]
    # the straggler is older than the duplicate window: out of order, and too late to place
    assert d["duplicates"] == 1 and d["out_of_order"] == 2 and d["late_packets"] == 1
    assert (audio[: 600 * 160, 0] != 0).all()


def test_control_and_unexpected_payload_types(tmp_path: Path) -> None:
    pk = stream(0, 10) + [(S, 0, 101, 110, 6600, 7), (S, 0, 13, 111, 6760, 7),
                          (S, 0, 96, 112, 6920, 7)]
    _audio, summary = write(tmp_path, pk)
    d = summary["directions"][0]
    assert d["control_packets"] == 2 and d["unexpected_payload_type"] == 1
    call, spool = make_call(tmp_path / "again", pk + [(2 * S, 1, 0, 1, 1, 9)])
    drops = write_call(record_of(call), spool, str(tmp_path / "again")).drops
    assert drops == {"rtp_unexpected_payload_type": 1}


def test_unknown_codec_gives_silence_and_a_warning(tmp_path: Path) -> None:
    pk = [(k * 20_000_000, 0, 12, k, 160 * k, 5) for k in range(10)]
    audio, summary = write(tmp_path, pk, pts=["12"])
    # a silent channel, a packet time per packet, so the call visibly had media
    assert audio.shape == (1600, 2) and not audio.any() and summary["audio"]
    assert "payload type 12 (QCELP/8000) has no decoder" in summary["warnings"][0]
    assert summary["directions"][0]["packets"] == 10


def test_call_without_media(tmp_path: Path) -> None:
    call = Call("k", "nomedia@test", T0, 1)
    entry, drops, _ = write_call(record_of(call), None, str(tmp_path))
    assert drops == {}
    assert entry["audio"] is None and (tmp_path / entry["metadata"]).exists()


def test_codec_switch_mid_stream_resamples_to_the_highest_rate(tmp_path: Path) -> None:
    import av

    from writer.options import WriteOptions

    enc = av.CodecContext.create("g722", "w")
    enc.sample_rate, enc.layout, enc.format = 16000, "mono", "s16"
    enc.open()
    t = np.arange(16000) / 16000
    pcm = np.round(6000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    g722 = b""
    for i in range(0, len(pcm), 320):
        frame = av.AudioFrame.from_ndarray(pcm[None, i: i + 320], format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, i
        g722 += b"".join(bytes(p) for p in enc.encode(frame))
    call, _ = make_call(tmp_path, [], pts=["0", "9"])
    from capture.spool import SpoolSet

    spool = SpoolSet(str(tmp_path / "sp2"))
    for k in range(100):  # 2 s of PCMU, then G.722 from the same SSRC
        hdr = struct.pack("!BBHII", 0x80, 0, k, 160 * k, 7)
        spool.add(2, T0 + k * 20_000_000, 0, hdr + ulaw_encode(np.full(160, 3000, np.int16)))
    for k in range(50):
        hdr = struct.pack("!BBHII", 0x80, 9, 100 + k, 16000 + 160 * k, 7)
        spool.add(2, T0 + 2 * S + k * 20_000_000, 0, hdr + g722[160 * k: 160 * (k + 1)])
    call.serial = 2
    entry = write_call(record_of(call), spool.close_call(2), str(tmp_path / "o"),
                       WriteOptions()).entry
    audio, rate = read_wav(tmp_path / "o" / entry["audio"])
    summary = load_summary(tmp_path / "o", entry)
    assert rate == 16000 and entry["codecs"] == ["G722/16000", "PCMU/8000"]
    assert summary["directions"][0]["codecs"] == ["G722/16000", "PCMU/8000"]
    assert (np.abs(audio[1000:30000, 0].astype(int) - 3000) < 200).mean() > 0.95
    tail = audio[33000:47000, 0].astype(float)
    assert np.sqrt((tail**2).mean()) > 3000  # the 500 Hz tone, not silence


def test_comfort_noise_rendered_when_asked(tmp_path: Path) -> None:
    from writer.options import WriteOptions

    pk = stream(0, 50) + [(S, 0, 13, 150, 5000 + 8000, 7)] + [
        (2 * S + k * 20_000_000, 0, 0, 151 + k, 5000 + 16000 + 160 * k, 7) for k in range(50)]
    for mode, expect_noise in (("silence", False), ("noise", True)):
        call, spool = make_call(tmp_path / mode, pk)
        spool_cn = spool
        entry, _, _ = write_call(record_of(call), spool_cn, str(tmp_path / mode / "o"),
                              WriteOptions(comfort_noise=mode))
        audio, _ = read_wav(tmp_path / mode / "o" / entry["audio"])
        gap = audio[8000 + 800: 16000 - 800, 0].astype(float)
        level = np.sqrt((gap**2).mean())
        assert (level > 10) == expect_noise, (mode, level)
