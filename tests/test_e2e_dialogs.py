"""Dialog situations mirrors show, built packet by packet: forking, early media then CANCEL,
a response before its request, B2BUA legs sharing a Call-ID, Call-ID reuse, re-INVITE to a
new port and codec, hold and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calltap.generate import tone
from tests.helpers import load_index, load_summary, pcap_bytes, read_wav, run_import, udp4
from writer.g711 import alaw_encode, ulaw_encode

S = 1_000_000_000
MS = 1_000_000
A, B = "192.0.2.10", "198.51.100.20"
T0 = 1_700_000_000 * S


def sdp(ip: str, port: int, pt: int = 0, direction: str = "sendrecv") -> str:
    name = "PCMU" if pt == 0 else "PCMA"
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na={direction}\r\n")


def sip(start: str, cseq: str, call_id: str = "d1", ftag: str = "ft", ttag: str = "",
        body: str = "", reverse: bool = False) -> tuple[str, str, str]:
    frm = f"<sip:alice@example.com>;tag={ftag}"
    to = "<sip:bob@example.net>" + (f";tag={ttag}" if ttag else "")
    if reverse:  # a request from the callee: From and To swap
        frm, to = to, frm
    hdrs = [f"Call-ID: {call_id}", f"From: {frm}", f"To: {to}", f"CSeq: {cseq}",
            "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1"]
    if body:
        hdrs.append("Content-Type: application/sdp")
    hdrs.append(f"Content-Length: {len(body)}")
    return start, "\r\n".join(hdrs), body


def msg(parts: tuple[str, str, str]) -> bytes:
    start, hdrs, body = parts
    return f"{start}\r\n{hdrs}\r\n\r\n{body}".encode()


class Capture:
    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def sip(self, t: int, parts: tuple[str, str, str], from_caller: bool,
            a: str = A, b: str = B) -> None:
        src, dst = (a, b) if from_caller else (b, a)
        self.frames.append((t, udp4(src, 5060, dst, 5060, msg(parts))))

    def rtp(self, t0: int, seconds: float, src: tuple[str, int], dst: tuple[str, int],
            index: int, side: int, ssrc: int, pt: int = 0, first: int = 0) -> None:
        enc = ulaw_encode if pt == 0 else alaw_encode
        for k in range(int(seconds * 50)):
            n = first + k
            hdr = bytes([0x80, pt]) + (n & 0xFFFF).to_bytes(2, "big") + \
                (n * 160).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
            body = enc(tone(index, side, n * 160, 160))
            self.frames.append((t0 + k * 20 * MS, udp4(*src, *dst, hdr + body)))

    def write(self, path: Path) -> Path:
        frames = sorted(self.frames, key=lambda x: x[0])
        path.write_bytes(pcap_bytes([(T0 + t, f) for t, f in frames]))
        return path


def dominant(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * 8000 / len(x))


def test_forked_183s_then_200_records_the_winning_branch(tmp_path: Path) -> None:
    c = Capture()
    c.sip(0, sip("INVITE sip:bob@example.net SIP/2.0", "1 INVITE", body=sdp(A, 4000)), True)
    # two branches ring with early media; branch y answers
    c.sip(100 * MS, sip("SIP/2.0 183 Session Progress", "1 INVITE", ttag="x",
                        body=sdp("198.51.100.31", 6000)), False, b="198.51.100.31")
    c.sip(150 * MS, sip("SIP/2.0 183 Session Progress", "1 INVITE", ttag="y",
                        body=sdp("198.51.100.32", 6002)), False, b="198.51.100.32")
    c.rtp(200 * MS, 1.0, ("198.51.100.31", 6000), (A, 4000), 5, 1, 0x51)  # losing branch
    c.rtp(200 * MS, 3.0, ("198.51.100.32", 6002), (A, 4000), 0, 1, 0x52)  # winner, early
    c.sip(2 * S, sip("SIP/2.0 200 OK", "1 INVITE", ttag="y", body=sdp("198.51.100.32", 6002)),
          False, b="198.51.100.32")
    c.sip(2 * S + MS, sip("ACK sip:bob@example.net SIP/2.0", "1 ACK", ttag="y"), True)
    c.rtp(2 * S, 1.0, (A, 4000), ("198.51.100.32", 6002), 0, 0, 0x53)
    c.sip(4 * S, sip("BYE sip:bob@example.net SIP/2.0", "2 BYE", ttag="y"), True)
    run_import([c.write(tmp_path / "fork.pcap")], tmp_path / "o")
    (e,) = load_index(tmp_path / "o")
    summary = load_summary(tmp_path / "o", e)
    callee = summary["directions"][1]
    assert summary["call"]["callee_tag"] == "y" and e["early_media"]
    assert [s["ssrc"] for s in callee["ssrcs"]] == ["0x00000052"]  # not the losing branch
    assert callee["early_media_packets"] == 90 and callee["segments"][0]["early_media"]
    audio, _ = read_wav(tmp_path / "o" / e["audio"])
    assert abs(dominant(audio[800:8000, 1]) - 337.0) < 10  # party (0, callee) tone


def test_early_media_then_cancel_is_recorded_and_marked(tmp_path: Path) -> None:
    c = Capture()
    c.sip(0, sip("INVITE sip:bob@example.net SIP/2.0", "1 INVITE", body=sdp(A, 4000)), True)
    c.sip(100 * MS, sip("SIP/2.0 183 Session Progress", "1 INVITE", ttag="t",
                        body=sdp(B, 6000)), False)
    c.rtp(200 * MS, 2.0, (B, 6000), (A, 4000), 1, 1, 0x61)
    c.sip(2500 * MS, sip("CANCEL sip:bob@example.net SIP/2.0", "1 CANCEL"), True)
    c.sip(2510 * MS, sip("SIP/2.0 487 Request Terminated", "1 INVITE", ttag="t"), False)
    run_import([c.write(tmp_path / "cancel.pcap")], tmp_path / "o")
    (e,) = load_index(tmp_path / "o")
    assert e["status"] == "cancelled" and e["early_media"] and e["audio"]
    assert e["packets"] == [0, 100]


def test_response_before_its_invite_is_still_applied(tmp_path: Path) -> None:
    c = Capture()
    # the mirror delivers the 200 (with the callee's SDP) before the INVITE
    c.sip(0, sip("SIP/2.0 200 OK", "1 INVITE", ttag="t", body=sdp(B, 6000)), False)
    c.sip(1 * MS, sip("INVITE sip:bob@example.net SIP/2.0", "1 INVITE", body=sdp(A, 4000)),
          True)
    c.sip(2 * MS, sip("ACK sip:bob@example.net SIP/2.0", "1 ACK", ttag="t"), True)
    c.rtp(10 * MS, 1.0, (A, 4000), (B, 6000), 2, 0, 0x71)
    c.rtp(10 * MS, 1.0, (B, 6000), (A, 4000), 2, 1, 0x72)
    c.sip(2 * S, sip("BYE sip:bob@example.net SIP/2.0", "2 BYE", ttag="t"), True)
    imp = run_import([c.write(tmp_path / "reorder.pcap")], tmp_path / "o")
    (e,) = load_index(tmp_path / "o")
    assert e["status"] == "completed" and e["answer"] and e["packets"] == [50, 50]
    assert imp.drops["sip_outside_invite_dialog"] == 0


def test_b2bua_legs_sharing_a_call_id_stay_apart(tmp_path: Path) -> None:
    c = Capture()
    for leg, (tag, a_port, b_port, idx) in enumerate((("leg-a", 4000, 6000, 3),
                                                      ("leg-b", 4100, 6100, 4))):
        t = leg * 10 * MS
        c.sip(t, sip("INVITE sip:bob@example.net SIP/2.0", "1 INVITE", ftag=tag,
                     body=sdp(A, a_port)), True)
        c.sip(t + 100 * MS, sip("SIP/2.0 200 OK", "1 INVITE", ftag=tag, ttag=f"{tag}-t",
                                body=sdp(B, b_port)), False)
        c.rtp(t + 200 * MS, 1.0, (A, a_port), (B, b_port), idx, 0, 0x80 + leg)
        c.sip(t + 2 * S, sip("BYE sip:bob@example.net SIP/2.0", "2 BYE", ftag=tag,
                             ttag=f"{tag}-t"), True)
    run_import([c.write(tmp_path / "b2bua.pcap")], tmp_path / "o")
    entries = load_index(tmp_path / "o")
    assert len(entries) == 2 and {e["call_id"] for e in entries} == {"d1"}
    tags = sorted(load_summary(tmp_path / "o", e)["call"]["caller_tag"] for e in entries)
    assert tags == ["leg-a", "leg-b"] and all(e["packets"] == [50, 0] for e in entries)


def test_call_id_reused_after_the_call_ended_is_a_new_call(tmp_path: Path) -> None:
    c = Capture()
    for n, t in enumerate((0, 20 * S)):
        c.sip(t, sip("INVITE sip:bob@example.net SIP/2.0", "1 INVITE", ftag=f"f{n}",
                     body=sdp(A, 4000)), True)
        c.sip(t + 100 * MS, sip("SIP/2.0 200 OK", "1 INVITE", ftag=f"f{n}", ttag="t",
                                body=sdp(B, 6000)), False)
        c.rtp(t + 200 * MS, 1.0, (A, 4000), (B, 6000), 1, 0, 0x90 + n)
        c.sip(t + 2 * S, sip("BYE sip:bob@example.net SIP/2.0", "2 BYE", ftag=f"f{n}",
                             ttag="t"), True)
    run_import([c.write(tmp_path / "reuse.pcap")], tmp_path / "o")
    entries = sorted(load_index(tmp_path / "o"), key=lambda e: e["start"])
    assert len(entries) == 2 and all(e["packets"] == [50, 0] for e in entries)


def test_reinvite_to_new_port_and_codec_then_hold_and_resume(tmp_path: Path) -> None:
    c = Capture()
    c.sip(0, sip("INVITE sip:bob@example.net SIP/2.0", "1 INVITE", body=sdp(A, 4000)), True)
    c.sip(100 * MS, sip("SIP/2.0 200 OK", "1 INVITE", ttag="t", body=sdp(B, 6000)), False)
    c.rtp(200 * MS, 2.0, (B, 6000), (A, 4000), 6, 1, 0xA1)  # PCMU from 6000
    # the callee moves to port 6100 and PCMA
    c.sip(2300 * MS, sip("INVITE sip:alice@example.com SIP/2.0", "1 INVITE", ftag="ft", ttag="t",
                         body=sdp(B, 6100, pt=8), reverse=True), False)
    c.sip(2310 * MS, sip("SIP/2.0 200 OK", "1 INVITE", ftag="ft", ttag="t",
                         body=sdp(A, 4000, pt=8), reverse=True), True)
    c.rtp(2400 * MS, 2.0, (B, 6100), (A, 4000), 6, 1, 0xA1, pt=8, first=100)
    # hold (sendonly) for two seconds, then resume
    c.sip(4500 * MS, sip("INVITE sip:bob@example.net SIP/2.0", "2 INVITE", ttag="t",
                         body=sdp(A, 4000, pt=8, direction="sendonly")), True)
    c.sip(6500 * MS, sip("INVITE sip:bob@example.net SIP/2.0", "3 INVITE", ttag="t",
                         body=sdp(A, 4000, pt=8)), True)
    # senders keep numbering across a hold: the gap is silence, not loss
    c.rtp(6600 * MS, 1.0, (B, 6100), (A, 4000), 6, 1, 0xA1, pt=8, first=200)
    c.sip(8 * S, sip("BYE sip:bob@example.net SIP/2.0", "4 BYE", ttag="t"), True)
    run_import([c.write(tmp_path / "reinvite.pcap")], tmp_path / "o")
    (e,) = load_index(tmp_path / "o")
    summary = load_summary(tmp_path / "o", e)
    callee = summary["directions"][1]
    assert callee["packets"] == 250 and callee["lost"] == 0
    assert sorted(callee["codecs"]) == ["PCMA/8000", "PCMU/8000"]
    audio, _ = read_wav(tmp_path / "o" / e["audio"])
    ch = audio[:, 1]
    assert ch[:16000].any() and ch[20000:32000].any()  # before and after the move
    assert not ch[36000:50000].any()  # on hold: silence
    assert ch[52000:58000].any()  # resumed
    directions = [m["direction"] for m in summary["call"]["media"]["caller"]]
    assert directions == ["sendrecv", "sendrecv", "sendonly", "sendrecv"]


def test_overlapping_calls_announcing_one_media_address_are_not_mixed(tmp_path: Path) -> None:
    # a media server answers three overlapping calls, each with the same address and port
    c = Capture()
    callers = [("192.0.2.11", 4000), ("192.0.2.12", 4000), ("192.0.2.13", 4002)]
    for n, (ip, port) in enumerate(callers):
        t = n * 300 * MS
        cid = f"shared-{n}"
        c.sip(t, sip("INVITE sip:ivr@example.net SIP/2.0", "1 INVITE", call_id=cid,
                     ftag=f"f{n}", body=sdp(ip, port)), True, a=ip)
        c.sip(t + 50 * MS, sip("SIP/2.0 200 OK", "1 INVITE", call_id=cid, ftag=f"f{n}",
                               ttag="srv", body=sdp(B, 7000)), False, a=ip)
        c.rtp(t + 100 * MS, 2.0, (ip, port), (B, 7000), 10 + n, 0, 0xB0 + n)
        c.rtp(t + 100 * MS, 2.0, (B, 7000), (ip, port), 10 + n, 1, 0xC0 + n)
        c.sip(t + 3 * S, sip("BYE sip:ivr@example.net SIP/2.0", "2 BYE", call_id=cid,
                             ftag=f"f{n}", ttag="srv"), True, a=ip)
    run_import([c.write(tmp_path / "shared.pcap")], tmp_path / "o")
    entries = {e["call_id"]: e for e in load_index(tmp_path / "o")}
    assert sorted(entries) == ["shared-0", "shared-1", "shared-2"]
    for n in range(3):
        e = entries[f"shared-{n}"]
        summary = load_summary(tmp_path / "o", e)
        ssrcs = [[s["ssrc"] for s in d["ssrcs"]] for d in summary["directions"]]
        assert ssrcs == [[f"0x{0xB0 + n:08x}"], [f"0x{0xC0 + n:08x}"]], e["call_id"]
        assert e["packets"] == [100, 100]


def test_hold_periods_and_segment_gaps_in_the_summary(tmp_path: Path) -> None:
    test_reinvite_to_new_port_and_codec_then_hold_and_resume(tmp_path)
    (e,) = load_index(tmp_path / "o")
    callee = load_summary(tmp_path / "o", e)["directions"][1]
    (hold,) = callee["hold"]  # the caller's sendonly: the callee was not to send
    assert hold["start"].endswith("13:24.500000Z") and hold["end"].endswith("13:26.500000Z")
    # the move to a new port starts a second mapping 200 ms of silence later; the resume
    # after the hold a third, 2.2 s later
    gaps = [s["gaps_filled_ms"] for s in callee["segments"]]
    assert [s["packets"] for s in callee["segments"]] == [100, 100, 50]
    assert gaps[0] == 0 and abs(gaps[1] - 200) <= 20 and abs(gaps[2] - 2200) <= 20
