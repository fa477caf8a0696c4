"""Mirror-port variations of one generated capture must give the same recordings as the
clean capture: tunnels, tags, duplicates, NAT, SSRC changes."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from calltap.generate import GenOptions, generate
from capture.decode import decode
from capture.hep import build_hep3
from capture.pcapfile import open_capture
from capture.pcapwrite import ip_checksum, udp_frame
from correlate.sip import looks_like_sip
from tests.helpers import load_index, pcap_bytes, run_import

OPTS = GenOptions(calls=3, duration=2.0, seed=17)
Frame = tuple[int, bytes]


def ip4_header(proto: int, payload_len: int, src: bytes = b"\x0a\0\0\1",
               dst: bytes = b"\x0a\0\0\2") -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]


def outer_eth(etype: int, payload: bytes) -> bytes:
    return b"\x0e" * 6 + b"\x0c" * 6 + struct.pack("!H", etype) + payload


def vlan(frames: list[Frame]) -> list[Frame]:
    return [(t, f[:12] + b"\x81\x00\x00\x18" + f[12:]) for t, f in frames]


def qinq(frames: list[Frame]) -> list[Frame]:
    return [(t, f[:12] + b"\x88\xa8\x00\x64\x81\x00\x00\x18" + f[12:]) for t, f in frames]


def gre(frames: list[Frame]) -> list[Frame]:
    out = []
    for t, f in frames:
        inner = b"\x20\x00\x08\x00" + b"\0\0\0\x2a" + f[14:]  # key present, IPv4 inside
        out.append((t, outer_eth(0x0800, ip4_header(47, len(inner)) + inner)))
    return out


def erspan2(frames: list[Frame]) -> list[Frame]:
    out = []
    for i, (t, f) in enumerate(frames):
        inner = b"\x10\x00\x88\xbe" + struct.pack("!I", i) + b"\x10\x00\x00\x07" + b"\0" * 4 + f
        out.append((t, outer_eth(0x0800, ip4_header(47, len(inner)) + inner)))
    return out


def erspan3(frames: list[Frame]) -> list[Frame]:
    out = []
    for t, f in frames:
        hdr = b"\x20\x00\x00\x07" + struct.pack("!I", t & 0xFFFFFFFF) + b"\0\0\0\x01"
        inner = b"\x00\x00\x22\xeb" + hdr + b"\0" * 8 + f  # O flag: 8-byte platform subheader
        out.append((t, outer_eth(0x0800, ip4_header(47, len(inner)) + inner)))
    return out


def vxlan(frames: list[Frame]) -> list[Frame]:
    return [(t, udp_frame(b"\x0a\0\0\1", 40000 + i % 100, b"\x0a\0\0\2", 4789,
                          b"\x08\0\0\0\0\0\x2a\0" + f)) for i, (t, f) in enumerate(frames)]


def ipip(frames: list[Frame]) -> list[Frame]:
    return [(t, outer_eth(0x0800, ip4_header(4, len(f) - 14) + f[14:])) for t, f in frames]


def mpls(frames: list[Frame]) -> list[Frame]:
    return [(t, f[:12] + b"\x88\x47" + b"\x00\x01\x00\x40" + b"\x00\x02\x01\x40" + f[14:])
            for t, f in frames]


def duplicated(frames: list[Frame]) -> list[Frame]:
    out = []
    for t, f in frames:  # both directions mirrored on two ports: every packet twice
        out += [(t, f), (t + 40_000, f)]
    return out


def hep3(frames: list[Frame]) -> list[Frame]:
    out = []
    for i, (t, f) in enumerate(frames):
        r = decode(1, f)
        assert not isinstance(r, int)
        pkt = build_hep3(t, r[1], r[2], r[3], r[4], r[5], compress=i % 3 == 0)
        out.append((t + 2_000_000, udp_frame(b"\x0a\0\0\5", 50000, b"\x0a\0\0\x09", 9060, pkt)))
    return out


def nat(frames: list[Frame]) -> list[Frame]:
    """The callee's media arrives from a public address and port its SDP never named."""
    out = []
    for t, f in frames:
        r = decode(1, f)
        assert not isinstance(r, int)
        if not looks_like_sip(r[5]) and r[1][:3] == bytes([198, 51, 100]):
            f = udp_frame(bytes([203, 0, 113, r[1][3]]), r[3] + 1000, r[2], r[4], r[5])
        out.append((t, f))
    return out


def ssrc_change(frames: list[Frame]) -> list[Frame]:
    """The caller restarts its stream halfway: new SSRC, new sequence and timestamp base."""
    switched: list[Frame] = []
    half = (frames[0][0] + frames[-1][0]) // 2
    for t, f in frames:
        r = decode(1, f)
        assert not isinstance(r, int)
        payload = r[5]
        if t > half and not looks_like_sip(payload) and r[1][:3] == bytes([192, 0, 2]):
            seq = (struct.unpack_from("!H", payload, 2)[0] + 20000) & 0xFFFF
            ts = (struct.unpack_from("!I", payload, 4)[0] + 7_000_000) & 0xFFFFFFFF
            payload = payload[:2] + struct.pack("!HII", seq, ts, 0xFEEDF00D) + payload[12:]
            f = udp_frame(r[1], r[3], r[2], r[4], payload)
        switched.append((t, f))
    return switched


VARIANTS: dict[str, Callable[[list[Frame]], list[Frame]]] = {
    "vlan": vlan, "qinq": qinq, "gre": gre, "erspan-ii": erspan2, "erspan-iii": erspan3,
    "vxlan": vxlan, "ip-in-ip": ipip, "mpls": mpls, "duplicated-mirror": duplicated,
    "hep3": hep3, "nat-media-source": nat, "ssrc-change": ssrc_change,
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Frame], Path]:
    base = tmp_path_factory.mktemp("clean")
    generate(str(base / "clean.pcap"), OPTS)
    frames = [(t, f) for t, _l, f in open_capture(str(base / "clean.pcap"))]
    run_import([base / "clean.pcap"], base / "out")
    return frames, base / "out"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_records_like_the_clean_capture(variant: str, clean: tuple[list[Frame], Path],
                                                tmp_path: Path) -> None:
    frames, clean_out = clean
    pcap = tmp_path / f"{variant}.pcap"
    pcap.write_bytes(pcap_bytes(VARIANTS[variant](frames)))
    run_import([pcap], tmp_path / "out")
    keys = ("call_id", "caller", "callee", "status", "codecs", "audio", "lost", "start")
    a = sorted(({k: e[k] for k in keys} for e in load_index(clean_out)),
               key=lambda e: e["call_id"])
    b = sorted(({k: e[k] for k in keys} for e in load_index(tmp_path / "out")),
               key=lambda e: e["call_id"])
    assert a == b and len(a) == 3
    for e in a:  # same channels, same audio, sample for sample
        audio = e["audio"]
        assert (clean_out / audio).read_bytes() == (tmp_path / "out" / audio).read_bytes()
