from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calltap.generate import GenOptions, frequency, generate, plan, tone, write_rtp_pcap
from capture.decode import decode
from capture.pcapfile import open_capture
from correlate.sip import looks_like_sip
from writer.rtp import parse_rtp


def test_deterministic_and_counts(tmp_path: Path) -> None:
    opts = GenOptions(calls=3, duration=1.0, seed=9)
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    assert generate(str(a), opts) == generate(str(b), opts)
    assert a.read_bytes() == b.read_bytes()
    sip = rtp = 0
    last = 0
    for ts, link, frame in open_capture(str(a)):
        assert ts >= last
        last = ts
        r = decode(link, frame)
        assert not isinstance(r, int)
        if looks_like_sip(r[5]):
            sip += 1
        else:
            parse_rtp(r[5])
            rtp += 1
    assert sip == 3 * 7 and rtp == 3 * 2 * 50


def test_impairments_change_packet_counts(tmp_path: Path) -> None:
    clean = generate(str(tmp_path / "c.pcap"), GenOptions(calls=2, duration=4.0))
    lossy = generate(str(tmp_path / "l.pcap"), GenOptions(calls=2, duration=4.0, loss=0.1))
    dup = generate(str(tmp_path / "d.pcap"), GenOptions(calls=2, duration=4.0, duplicate=0.1))
    assert lossy < clean < dup


def test_parties_have_distinct_tones() -> None:
    calls = plan(GenOptions(calls=20))
    freqs = [f for c in calls for f in c.freqs]
    assert len(set(freqs)) == 40 and max(freqs) < 3400
    x = tone(0, 1, 0, 8000).astype(float)
    peak = np.argmax(np.abs(np.fft.rfft(x))) * 8000 / len(x)
    assert abs(peak - frequency(0, 1)) < 2


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(str(tmp_path / "x.pcap"), GenOptions(codecs=("G729",)))
    with pytest.raises(ValueError):
        plan(GenOptions(duration=0))


def test_rtp_only_pcap(tmp_path: Path) -> None:
    path = tmp_path / "r.pcap"
    assert write_rtp_pcap(str(path), np.zeros(1600, np.int16)) == 10


def test_varied_calls_carry_identities_headers_and_spread_times(tmp_path: Path) -> None:
    from calltap.generate import T0_NS, varied_party
    from capture.pcapfile import close_capture, open_capture

    pcap = tmp_path / "v.pcap"
    generate(str(pcap), GenOptions(calls=8, duration=1.0, concurrent=False, varied=True))
    r = open_capture(str(pcap))
    invites = [(ts, f[42:]) for ts, _l, f in r if f[42:].startswith(b"INVITE")]
    close_capture(r)
    assert len(invites) == 8
    assert invites[7][0] - invites[0][0] == 7 * (16 * 60 + 7) * 1_000_000_000
    assert invites[0][0] == T0_NS
    for i, (_ts, msg) in enumerate(invites):
        p = varied_party(i)
        assert f"From: \"Caller {i}\" <sip:{p['caller']}@example.com>".encode() in msg
        assert (b"P-Asserted-Identity" in msg) == ("pai" in p)
        assert (b"Diversion" in msg) == ("diversion" in p)
        assert (b"X-Queue" in msg) == bool(p["queue"])


def test_hold_sends_reinvites_and_silences_the_callee(tmp_path: Path) -> None:
    pcap = tmp_path / "hold.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=6.0, seed=3, hold_at=2.0, unhold_at=4.0))
    invites: list[bytes] = []
    callee_rtp: list[int] = []
    first = 0
    for ts, link, frame in open_capture(str(pcap)):
        got = decode(link, frame)
        assert not isinstance(got, int)
        _proto, _src, _dst, sport, _dport, payload = got
        if looks_like_sip(payload):
            if payload.startswith(b"INVITE"):
                invites.append(payload)
        elif sport == 26000:
            first = first or ts
            callee_rtp.append(ts - first)
    assert len(invites) == 3
    assert b"a=sendonly" in invites[1] and b"a=sendrecv" in invites[2]
    held = [t for t in callee_rtp if 2.1e9 < t < 3.9e9]
    assert not held and len(callee_rtp) == 300 - 100
