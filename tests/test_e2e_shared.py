"""Real captures from ../shared/pcaps: every file imports; named calls are recorded and
tshark (through pyshark) agrees on every stream's packet count."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import (
    ALL_SHARED,
    SCHEMA,
    load_index,
    load_summary,
    need_shared,
    read_wav,
    run_import,
)

ALL = ALL_SHARED

# file -> Call-IDs recorded with audio
ACCEPTANCE = {
    "sip-rtp-g711.pcap": {"1-1966@10.0.2.20", "1-1968@10.0.2.20"},
    # plus two RTP flows that MGCP (not SIP) set up, recorded as unsignalled calls
    "SIP_CALL_RTP_G711.pcap": {"12013223@200.57.7.195",
                               "unsignalled-200.57.7.196:40378-200.57.7.199:4800",
                               "unsignalled-200.57.7.202:30000-200.57.7.196:40362"},
    "nb6-telephone.pcap": {"1135D8701739D86@10.251.23.139"},
    "rtp-protocol.pcap": {"1907983263271201083544@10.33.6.101"},
    "SIP_DTMF2.pcap": {"25672@192.168.105.110"},
    "LtoZ_rtpFilter_fail_2.pcap": {"738c6ff4-3bef5da0@10.10.10.211"},
    "b2bua-asterisk.pcapng": {
        "M2Q0ZDc1ZGM1NzIyMTlhZTA3NDU3NTgzMzA5YmJmZWQ.",
        "37686afc57ce24ac655742b3644a7bb8@172.16.98.101:5060",
    },
}
# Streams shorter than this carry too little to judge loudness (b2bua-asterisk's lone
# reverse packet).
MIN_PACKETS_FOR_LEVEL = 20
# Loudest 100 ms of a stream: speech reaches thousands; G.711 digital silence is 0-16.
# SIP_DTMF2's callee stream is line noise peaking at RMS 91, audible but quiet.
AUDIBLE_RMS = 50.0


def loudest_100ms(x: np.ndarray) -> float:
    n = len(x) // 800 * 800
    frames = x[:n].astype(np.float64).reshape(-1, 800)
    return float(np.sqrt((frames**2).mean(axis=1)).max()) if n else 0.0


@pytest.fixture(scope="module")
def schema() -> Any:
    if not SCHEMA.exists():
        pytest.skip("../shared/schemas is absent (fresh clone without the shared corpus)")
    import xmlschema

    return xmlschema.XMLSchema10(str(SCHEMA))


Imported = Callable[[str], tuple[Path, list[str]]]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    """A shared capture imported once with the defaults for every test of this module that
    reads it (they only read the output): its output directory and the import's errors."""
    done: dict[str, tuple[Path, list[str]]] = {}

    def get(name: str) -> tuple[Path, list[str]]:
        if name not in done:
            out = tmp_path_factory.mktemp("shared-import")
            done[name] = (out, list(run_import([need_shared() / name], out).errors))
        return done[name]

    return get


@pytest.mark.parametrize("name", ALL or ["(no shared corpus)"])
def test_every_shared_capture_imports(name: str, imported: Imported, schema: Any) -> None:
    need_shared()
    out, errors = imported(name)
    assert errors == []
    for e in load_index(out):
        schema.validate(str(out / e["metadata"]))
        assert (out / e["summary"]).exists()
        if e["audio"]:
            assert (out / e["audio"]).exists()
    assert not list(out.rglob("*.part")) and not list(out.glob(".spool-*"))


def tshark_streams(path: Path) -> Counter[int]:
    """Packets per SSRC of the RTP that SIP's SDP set up, as tshark decodes it."""
    import pyshark

    sip_frames: set[int] = set()
    cap = pyshark.FileCapture(str(path), display_filter="sip", keep_packets=False)
    try:
        for pkt in cap:
            sip_frames.add(int(pkt.number))
    finally:
        cap.close()
    counts: Counter[int] = Counter()
    cap = pyshark.FileCapture(str(path), display_filter="rtp", keep_packets=False)
    try:
        for pkt in cap:
            setup = pkt.rtp.get_field_value("setup_frame")
            if setup is not None and int(setup) in sip_frames:
                counts[int(pkt.rtp.ssrc, 16)] += 1
    finally:
        cap.close()
    return counts


@pytest.mark.parametrize("name", sorted(ACCEPTANCE))
def test_recorded_audible_and_tshark_agrees(name: str, imported: Imported) -> None:
    path = need_shared() / name
    out = imported(name)[0]
    entries = {e["call_id"]: e for e in load_index(out)}
    with_audio = {cid for cid, e in entries.items() if e["audio"]}
    assert with_audio == ACCEPTANCE[name]
    signalled: Counter[int] = Counter()  # tshark only follows SDP that SIP carried
    for cid in with_audio:
        e = entries[cid]
        summary = load_summary(out, e)
        audio, rate = read_wav(out / e["audio"])
        for d in summary["directions"]:
            for s in d["ssrcs"]:
                if e["status"] != "unsignalled":
                    signalled[int(s["ssrc"], 16)] += s["packets"]
            if d["packets"] >= MIN_PACKETS_FOR_LEVEL:
                level = loudest_100ms(audio[:, d["channel"]])
                assert level > AUDIBLE_RMS, (cid, d["channel"], level)
            elif d["packets"] == 0:
                assert not audio[:, d["channel"]].any(), (cid, d["channel"])
        assert rate == 8000
    theirs = tshark_streams(path)
    assert theirs, "tshark found no SDP-set-up RTP"
    assert signalled == theirs


# Codec captures: file -> (codec names recorded, output sample rate) for every call.
CODEC_FILES = {
    "sip-rtp-g722.pcap": ({"G722/16000"}, 16000),
    "sip-rtp-g729a.pcap": ({"G729/8000"}, 8000),
    "sip-rtp-gsm.pcap": ({"GSM/8000"}, 8000),
    "sip-rtp-ilbc.pcap": ({"iLBC/8000"}, 8000),
    "sip-rtp-g726.pcap": ({"G726-16/8000", "G726-24/8000", "G726-32/8000", "G726-40/8000",
                           "AAL2-G726-16/8000", "AAL2-G726-24/8000", "AAL2-G726-32/8000",
                           "AAL2-G726-40/8000"}, 8000),
    "sip-rtp-l16.pcap": ({"L16/8000/2", "L16/16000/2", "L16/11025", "L16/48000"}, 0),
    "sip-rtp-opus.pcap": ({"opus/48000"}, 48000),
    "sip-rtp-dvi4.pcap": ({"DVI4/8000", "DVI4/16000"}, 0),
}
# The SIPp stock prompt in these files peaks near RMS 1700 in its loudest 100 ms.
SPEECH_RMS = 800.0


@pytest.mark.parametrize("name", sorted(CODEC_FILES))
def test_codec_captures_have_speech(name: str, imported: Imported) -> None:
    out = imported(name)[0]
    codecs, rate = CODEC_FILES[name]
    seen = set()
    for e in load_index(out):
        assert e["audio"], e["call_id"]
        summary = load_summary(out, e)
        audio, got_rate = read_wav(out / e["audio"])
        if rate:
            assert got_rate == rate
        seen.update(e["codecs"])
        # SIPp sends, FreeSWITCH only receives: the callee channel carries the media
        caller, callee = summary["directions"]
        assert caller["packets"] == 0 and callee["packets"] > 250
        assert callee["decode_errors"] == 0
        n = got_rate // 10
        frames = audio[: len(audio) // n * n, 1].astype(np.float64).reshape(-1, n)
        assert float(np.sqrt((frames**2).mean(axis=1)).max()) > SPEECH_RMS
        assert not audio[:, 0].any()
    assert seen == codecs


def test_lpc10_is_decoded_to_speech(tmp_path: Path) -> None:
    # PT 7 from FreeSWITCH: LPC-10 (FS-1015), four 7-byte frames per 90 ms packet, decoded
    # by spandsp
    from writer import lpc10

    if not lpc10.available():
        pytest.skip("libspandsp is not installed (.ci/setup installs it)")
    run_import([need_shared() / "sip-rtp-lpc.pcap"], tmp_path)
    (e,) = load_index(tmp_path)
    summary = load_summary(tmp_path, e)
    audio, rate = read_wav(tmp_path / e["audio"])
    assert rate == 8000 and len(audio) == 95 * 720 and not audio[:, 0].any()
    frames = audio[:, 1].astype(np.float64).reshape(-1, 720)  # 90 ms frames
    assert float(np.sqrt((frames**2).mean(axis=1)).max()) > SPEECH_RMS
    assert summary["warnings"] == [] and summary["directions"][1]["codecs"] == ["LPC/8000"]


def test_dtmf_digits_with_times(tmp_path: Path) -> None:
    run_import([need_shared() / "SIP_DTMF2.pcap", need_shared() / "DTMFsipinfo.pcap"], tmp_path)
    by_id = {e["call_id"]: e for e in load_index(tmp_path)}
    rfc4733 = load_summary(tmp_path, by_id["25672@192.168.105.110"])["dtmf"]
    # first packet of each event, as tshark shows it (frame.time_epoch, rtp.marker == 1)
    assert [(d["digit"], d["time"], d["duration_ms"], d["source"]) for d in rfc4733] == [
        ("6", "2005-09-09T12:03:46.859546Z", 120.0, "rfc4733"),
        ("7", "2005-09-09T12:03:48.389610Z", 120.0, "rfc4733"),
        ("8", "2005-09-09T12:03:48.869639Z", 120.0, "rfc4733"),
        ("9", "2005-09-09T12:03:49.319683Z", 120.0, "rfc4733"),
        ("1", "2005-09-09T12:03:49.919678Z", 120.0, "rfc4733"),
        ("2", "2005-09-09T12:03:50.429711Z", 120.0, "rfc4733"),
        ("3", "2005-09-09T12:03:50.999726Z", 120.0, "rfc4733"),
    ]
    assert by_id["25672@192.168.105.110"]["dtmf"] == "6789123"
    info = [e for e in by_id.values() if e["dtmf"] and e["call_id"] != "25672@192.168.105.110"]
    assert len(info) == 1
    digits = load_summary(tmp_path, info[0])["dtmf"]
    assert [d["time"] for d in digits] == [
        "2011-04-27T08:14:36.869586Z", "2011-04-27T08:14:40.600416Z",
        "2011-04-27T08:15:46.275825Z", "2011-04-27T08:15:48.231547Z"]
    assert {d["source"] for d in digits} == {"sip-info"}


def test_fragmented_invites_in_shared_captures(tmp_path: Path) -> None:
    # ipv6frag: the INVITE comes in two IPv6 fragments; SIP-SRTP: the caller's INVITE in two
    # IPv4 fragments. Both dialogs are found only through reassembly.
    imp = run_import([need_shared() / "ipv6frag.pcap"], tmp_path / "v6")
    (e,) = load_index(tmp_path / "v6")
    assert e["caller"].startswith("sip:sipp@") and imp.reassembled == 2
    imp = run_import([need_shared() / "SIP-SRTP-Normal_Call_two_parties.pcap"], tmp_path / "v4")
    assert imp.reassembled == 1 and len(load_index(tmp_path / "v4")) == 2


def test_srtp_sdes_decrypts_and_a_wrong_key_fails_authentication(tmp_path: Path) -> None:
    path = need_shared() / "SIP-SRTP-Normal_Call_two_parties.pcap"
    run_import([path], tmp_path / "ok")
    entries = load_index(tmp_path / "ok")
    assert len(entries) == 2
    ssrcs = []
    for e in entries:
        summary = load_summary(tmp_path / "ok", e)
        audio, _ = read_wav(tmp_path / "ok" / e["audio"])
        assert summary["warnings"] == []
        for d in summary["directions"]:
            assert d["srtp"] == {"keys": ["AES_CM_128_HMAC_SHA1_80 (sdes)"], "auth_failed": 0,
                                 "no_key": 0}
            assert d["packets"] > 1000 and loudest_100ms(audio[:, d["channel"]]) > 1000
            ssrcs.append(d["ssrcs"][0]["ssrc"])
    assert len(set(ssrcs)) == 4
    wrong = f"{ssrcs[0]}=AES_CM_128_HMAC_SHA1_80:" + "A" * 40
    imp = run_import([path], tmp_path / "bad", srtp_keys=[wrong])
    failed = [d for e in load_index(tmp_path / "bad")
              for d in load_summary(tmp_path / "bad", e)["directions"]
              if d["ssrcs"][0]["ssrc"] == ssrcs[0]]
    (d,) = failed
    assert d["srtp"]["auth_failed"] == d["packets"]
    assert imp.drops["srtp_auth_failed"] == d["packets"]
    bad_entry = next(e for e in load_index(tmp_path / "bad")
                     if any(x["ssrcs"][0]["ssrc"] == ssrcs[0]
                            for x in load_summary(tmp_path / "bad", e)["directions"]))
    audio, _ = read_wav(tmp_path / "bad" / bad_entry["audio"])
    assert not audio[:, d["channel"]].any()  # silence, not noise


def test_unsignalled_rtp_and_srtp(tmp_path: Path) -> None:
    shared = need_shared()
    run_import([shared / "SIP-over-TLS-RTP-Normal_Call_two_parties.pcap"], tmp_path / "tls")
    entries = load_index(tmp_path / "tls")
    assert len(entries) == 2 and {e["status"] for e in entries} == {"unsignalled"}
    for e in entries:
        audio, _ = read_wav(tmp_path / "tls" / e["audio"])
        assert loudest_100ms(audio[:, 0]) > 1000 and loudest_100ms(audio[:, 1]) > 1000
    # SRTP with its keys inside TLS: recognised as ciphertext, kept silent, said why
    run_import([shared / "SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap"], tmp_path / "s")
    for e in load_index(tmp_path / "s"):
        audio, _ = read_wav(tmp_path / "s" / e["audio"])
        warnings = load_summary(tmp_path / "s", e)["warnings"]
        assert not audio.any() and len(warnings) == 2 and "looks encrypted" in warnings[0]


MARSEILLAISE_KEY = "AES_CM_128_HMAC_SHA1_80:aSBrbm93IGFsbCB5b3VyIGxpdHRsZSBzZWNyZXRz"


def test_marseillaise_with_its_published_key(tmp_path: Path) -> None:
    path = need_shared() / "marseillaise-srtp.pcap"
    run_import([path], tmp_path / "ok", srtp_keys=[MARSEILLAISE_KEY])
    (e,) = load_index(tmp_path / "ok")
    d = load_summary(tmp_path / "ok", e)["directions"][0]
    audio, _ = read_wav(tmp_path / "ok" / e["audio"])
    assert d["srtp"]["auth_failed"] == 0 and d["packets"] == 11888
    assert loudest_100ms(audio[:, 0]) > 1000 and e["codecs"] == ["PCMA/8000"]
    wrong = "0xdeadbeef=AES_CM_128_HMAC_SHA1_80:" + "B" * 40
    imp = run_import([path], tmp_path / "bad", srtp_keys=[wrong])
    (e,) = load_index(tmp_path / "bad")
    audio, _ = read_wav(tmp_path / "bad" / e["audio"])
    assert imp.drops["srtp_auth_failed"] == 11888 and not audio.any()



# file -> (calls recorded with audio, {Call-ID: channels that carry sound}); beside each,
# CATALOG.md's recordable count and, where ours differs or is notable, why.
PINNED: dict[str, tuple[int, dict[str, str]]] = {
    # CATALOG 0: RTP-only PCMU leg recorded as an unsignalled call
    '09a_2833_dtmf.pcap': (1, {'unsignalled-192.91.191.186:20014-192.168.1.40:22130': '0'}),
    # CATALOG 2: plus an RTP flow that H.323, not SIP, set up (unsignalled)
    '1filtered.cap': (3, {
        '1adb29b1-a256df11-8c6b8346-a9787f68': '01',
        '1ca04ec5-a256df11-8c6b8346-a9787f68': '01',
        'unsignalled-174.120.125.35:18530-174.132.174.114:21980': '0',
    }),
    # CATALOG 1
    'Asterisk_ZFONE_XLITE.pcap': (1, {'ZDYzOWVlNjEwM2NjZTBjNzliNmM1ZTNiOGZjNWFhN2E.': '01'}),
    # CATALOG 0
    'DTMFsipinfo.pcap': (0, {}),
    # CATALOG 1
    'FAX-Call-t38-CA-TDM-SIP-FB-1.pcap': (1, {
        '00e9d4a500e9d48-0015-0001-0000-0000@10.35.40.25': '01',
    }),
    # CATALOG 1
    'LtoZ_rtpFilter_fail_2.pcap': (1, {'738c6ff4-3bef5da0@10.10.10.211': '01'}),
    # CATALOG 0
    'MSCML.pcap': (0, {}),
    # CATALOG 2
    'SIP-SRTP-Normal_Call_two_parties.pcap': (2, {
        '20d1c8822125483494b04e47206cec19': '01',
        '6dbcc9a6-d89a-4547-9c91-72949f9e581c': '01',
    }),
    # CATALOG 0: SIP in TLS: SRTP as unsignalled calls, silent (ciphertext)
    'SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap': (2, {
        'unsignalled-192.168.20.130:16670-192.168.20.132:4000': '',
        'unsignalled-192.168.20.1:4000-192.168.20.130:13416': '',
    }),
    # CATALOG 0: SIP in TLS: plain RTP recorded as unsignalled calls
    'SIP-over-TLS-RTP-Normal_Call_two_parties.pcap': (2, {
        'unsignalled-192.168.20.130:14610-192.168.20.132:4000': '01',
        'unsignalled-192.168.20.1:4000-192.168.20.130:12668': '01',
    }),
    # CATALOG 1: plus two RTP flows that MGCP set up (unsignalled)
    'SIP_CALL_RTP_G711.pcap': (3, {
        '12013223@200.57.7.195': '01',
        'unsignalled-200.57.7.196:40378-200.57.7.199:4800': '01',
        'unsignalled-200.57.7.202:30000-200.57.7.196:40362': '0',
    }),
    # CATALOG 1
    'SIP_DTMF2.pcap': (1, {'25672@192.168.105.110': '01'}),
    # CATALOG 0
    'T38.pcap': (0, {}),
    # CATALOG 1
    'aaa.pcap': (1, {'11894297-4432a9f8@192.168.1.2': '0'}),
    # CATALOG 1: after Asterisk's direct-media re-INVITEs both legs announce both phones'
    # addresses; the phones' streams (355 packets one way, 1 the other) go to one leg each
    'b2bua-asterisk.pcapng': (2, {
        '37686afc57ce24ac655742b3644a7bb8@172.16.98.101:5060': '0',
        'M2Q0ZDc1ZGM1NzIyMTlhZTA3NDU3NTgzMzA5YmJmZWQ.': '1',
    }),
    # CATALOG 0: RTP-only telephone-events: a silent unsignalled call with its digits
    'dtmf_2833_1.pcap': (1, {'unsignalled-192.168.0.3:49176-192.168.0.1:10000': ''}),
    # CATALOG 0
    'erspan_sip_ipv4_udp.pcapng': (0, {}),
    # CATALOG 0
    'filenameGRE199---fax-iz-InLife-G711---OK!!!.cap': (0, {}),
    # CATALOG 0: RTP-only PCMA stream recorded as an unsignalled call
    'g711a.pcap': (1, {'unsignalled-10.1.3.143:5000-10.1.6.18:2006': '0'}),
    # CATALOG 0
    'gre.pcapng': (0, {}),
    # CATALOG 1
    'h263-over-rtp.pcap': (1, {'NmNhYWNhMjY0Y2M0OTc4YTI2MzgzZTNlYTRhZTMxNTE.': ''}),
    # CATALOG 0
    'hep.pcap': (0, {}),
    # CATALOG 0
    'hep3_compressed.pcap.pcapng': (0, {}),
    # CATALOG 0
    'ipip.pcap': (0, {}),
    # CATALOG 0
    'ipip0.pcap': (0, {}),
    # CATALOG 0
    'ipv6frag.pcap': (0, {}),
    # CATALOG 0: RTP-only SRTP stream: unsignalled, silent without its key
    'marseillaise-srtp.pcap': (1, {'unsignalled-10.1.1.1:10000-10.2.2.2:10000': ''}),
    # CATALOG 0
    'mikey_psk.pcap': (0, {}),
    # CATALOG 1
    'nb6-telephone.pcap': (1, {'1135D8701739D86@10.251.23.139': '01'}),
    # CATALOG 1
    'port-16_vlan24_200.pcap': (1, {'2247957968-92448163@192.168.24.200': '1'}),
    # CATALOG 1
    'rtp-protocol.pcap': (1, {'1907983263271201083544@10.33.6.101': '01'}),
    # CATALOG 0
    'sip-488-codec-reject.pcapng': (0, {}),
    # CATALOG 0
    'sip-body-large.pcap': (0, {}),
    # CATALOG 0
    'sip-proxy.pcap': (0, {}),
    # CATALOG 0
    'sip-routing-error.pcapng': (0, {}),
    # CATALOG 2
    'sip-rtp-dvi4.pcap': (2, {'1-2187@10.0.2.20': '1', '1-2189@10.0.2.20': '1'}),
    # CATALOG 2
    'sip-rtp-g711.pcap': (2, {'1-1966@10.0.2.20': '1', '1-1968@10.0.2.20': '1'}),
    # CATALOG 1
    'sip-rtp-g722.pcap': (1, {'1-2161@10.0.2.20': '1'}),
    # CATALOG 8
    'sip-rtp-g726.pcap': (8, {
        '1-2134@10.0.2.20': '1',
        '1-2137@10.0.2.20': '1',
        '1-2138@10.0.2.20': '1',
        '1-2139@10.0.2.20': '1',
        '1-2140@10.0.2.20': '1',
        '1-2141@10.0.2.20': '1',
        '1-2142@10.0.2.20': '1',
        '1-2143@10.0.2.20': '1',
    }),
    # CATALOG 1
    'sip-rtp-g729a.pcap': (1, {'1-24411@10.0.2.20': '1'}),
    # CATALOG 1
    'sip-rtp-gsm.pcap': (1, {'1-2176@10.0.2.20': '1'}),
    # CATALOG 1
    'sip-rtp-ilbc.pcap': (1, {'1-4269@10.0.2.20': '1'}),
    # CATALOG 4
    'sip-rtp-l16.pcap': (4, {
        '1-2118@10.0.2.20': '1',
        '1-2120@10.0.2.20': '1',
        '1-2121@10.0.2.20': '1',
        '1-2123@10.0.2.20': '1',
    }),
    # CATALOG 1
    'sip-rtp-lpc.pcap': (1, {'1-2168@10.0.2.20': '1'}),
    # CATALOG 1
    'sip-rtp-opus-hybrid.pcap': (1, {'1-4237@10.0.2.20': '1'}),
    # CATALOG 1
    'sip-rtp-opus.pcap': (1, {'1-4237@10.0.2.20': '1'}),
    # CATALOG 0
    'sip-sdp-example.pcap': (0, {}),
    # CATALOG 1
    'sip_ipv4_tcp.pcap': (1, {'158936656982201062716@10.33.6.100': '01'}),
    # CATALOG 0
    'sip_ipv4_tcp_fragmented.pcap': (0, {}),
    # CATALOG 0
    'sip_ipv4_tcp_retrans.pcap': (0, {}),
    # CATALOG 0
    'sip_ipv6_udp.pcap': (0, {}),
    # CATALOG 0
    'sip_sctp.pcap': (0, {}),
    # CATALOG 0
    'sip_tcp_websocket.pcap': (0, {}),
    # CATALOG 0
    'sipp-branch-scenario.pcapng': (0, {}),
    # CATALOG 1: INVITE head fragment missing: each participant stream is an unsignalled call
    'siprec_dual_channel_udp.pcap': (2, {
        'unsignalled-192.168.86.48:58594-18.220.121.163:23832': '0',
        'unsignalled-192.168.86.48:58596-18.220.121.163:22716': '0',
    }),
    # CATALOG 1
    'testing.ext.pcap': (1, {'c3eF6f58-363323Cd-8058EB88-10305830@192.168.1.87': ''}),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_recordings(name: str, imported: Imported) -> None:
    """Issue contract: per shared file, the calls recorded with audio, their Call-IDs and which
    channels carry sound, at or above CATALOG.md's recordable count (reasons beside)."""
    out = imported(name)[0]
    got = {}
    for e in load_index(out):
        if e["audio"]:
            audio, _ = read_wav(out / e["audio"])
            got[e["call_id"]] = "".join(str(c) for c in (0, 1) if audio[:, c].any())
    count, calls = PINNED[name]
    assert (len(got), got) == (count, calls)


def test_every_shared_file_is_pinned() -> None:
    assert set(ALL) == set(PINNED) or not ALL


# Streams where calltap and `tshark -z rtp,streams` differ, and why. Every other stream of
# every shared capture agrees on all eight columns.
TSHARK_DIFFERS = {
    # after the re-INVITE to m=image, Wireshark dissects the port as T.38; the gateway keeps
    # sending RTP there (2,010 packets), which calltap counts with the rest of the stream
    ("FAX-Call-t38-CA-TDM-SIP-FB-1.pcap", 0x0EAF0EAF): "t38",
    # L16/11025: Wireshark divides the clock by 1000 in integers (11 kHz), so its jitter
    # is off by 0.2%; calltap uses 11025 Hz
    ("sip-rtp-l16.pcap", 0x043DA985): "integer-clock",
    # the capture clock leaps by decades between packets: two RTP packets are stamped before
    # the INVITE that announced their port, so no call owns them
    ("testing.ext.pcap", 0x1D880B72): "clock-leaps",
    # video: calltap records audio and keeps no statistics for video streams
    ("h263-over-rtp.pcap", 0x5482ECE0): "video",
    ("testing.ext.pcap", 0x96ED8530): "video",
    ("testing.ext.pcap", 0x8F9A597A): "video",
}


Stream = tuple[int, str, str]  # SSRC, source and destination "address:port"


def tshark_rtp_streams(path: Path) -> dict[Stream, tuple[float, ...]]:
    """(packets, lost, min/mean/max delta, min/mean/max jitter) per stream from
    `tshark -q -z rtp,streams`."""
    import subprocess

    out = subprocess.run(["tshark", "-n", "-q", "-r", str(path), "-z", "rtp,streams"],
                         capture_output=True, text=True, check=True).stdout
    streams = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) > 12 and p[6].startswith("0x"):
            # the payload column may hold spaces; the loss percentage in brackets anchors it
            i = next(k for k in range(8, len(p) - 1) if p[k + 1].startswith("("))
            key = (int(p[6], 16), _ep(p[2], p[3]), _ep(p[4], p[5]))
            streams[key] = (float(p[i - 1]), float(p[i]), *(float(x) for x in p[i + 2:i + 8]))
    return streams


def _ep(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def calltap_rtp_streams(out: Path) -> dict[Stream, tuple[float, ...]]:
    """The same eight columns for every stream of every call in ``out``."""
    rows = {}
    for e in load_index(out):
        for d in load_summary(out, e)["directions"]:
            for s in d["ssrcs"]:
                cols = (s["received"], s["cumulative_lost"],
                        *(s[k][m] for k in ("delta_ms", "jitter_ms")
                          for m in ("min", "mean", "max")))
                src, dst = s["flow"].split(" -> ")
                # tshark prints -1 for a minimum with no regular packet; calltap null
                rows[(int(s["ssrc"], 16), src, dst)] = tuple(-1.0 if c is None else float(c)
                                                            for c in cols)
    return rows


def same_columns(mine: tuple[float, ...], theirs: tuple[float, ...]) -> bool:
    """Counts exact; delta and jitter within 0.01 ms (both print three decimals)."""
    return mine[:2] == theirs[:2] and all(abs(a - b) <= 0.0105
                                          for a, b in zip(mine[2:], theirs[2:], strict=True))


@pytest.mark.parametrize("name", ALL)
def test_stream_statistics_equal_tsharks(name: str, tmp_path: Path) -> None:
    """Every stream tshark lists is one of calltap's with the same eight columns, or its
    difference is explained in TSHARK_DIFFERS. (calltap lists more: relayed legs and RTP no
    SDP announced, which tshark with heuristics off does not decode.)"""
    path = need_shared() / name
    run_import([path], tmp_path, dedup_window=0.0)
    mine = calltap_rtp_streams(tmp_path)
    for key, theirs in tshark_rtp_streams(path).items():
        why = TSHARK_DIFFERS.get((name, key[0]))
        ours = mine.get(key)
        if why is None:
            assert ours is not None, f"{name}: calltap has no stream {key}"
            assert same_columns(ours, theirs), (name, key, ours, theirs)
        else:
            assert ours is None or not same_columns(ours, theirs), \
                f"{name} 0x{key[0]:08x} now agrees: drop it from TSHARK_DIFFERS"


def test_far_end_rtcp_reports_match_tsharks_fields(tmp_path: Path) -> None:
    # tshark -Y rtcp.ssrc.identifier -T fields -e rtcp.ssrc.cum_nr -e rtcp.ssrc.jitter:
    # sip_ipv4_tcp's RR about 0x42f433d4 reports 0 lost, jitter 0; SIP_CALL_RTP_G711's last
    # RR about 0x58f33dea reports jitter 9244 timestamp units (1155.5 ms at 8 kHz).
    run_import([need_shared() / "sip_ipv4_tcp.pcap", need_shared() / "SIP_CALL_RTP_G711.pcap"],
               tmp_path)
    reports = {}
    for e in load_index(tmp_path):
        if e["status"] == "unsignalled":
            continue
        for d in load_summary(tmp_path, e)["directions"]:
            reports.update(d["far_end_reports"])
    assert reports["0x42f433d4"]["cumulative_lost"] == 0
    assert reports["0x42f433d4"]["jitter_ms"] == 0.0
    assert reports["0x58f33dea"]["jitter_ms"] == 1155.5
    assert reports["0xd2bd4e3e"]["rtt_ms"] is not None
