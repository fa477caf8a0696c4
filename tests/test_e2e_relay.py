"""Calls through a SIP proxy with a media relay, as its mirror port sees them (both hops of
every stream): one recording per call, each channel the right party's audio aligned with
the clean capture's recording, the other hop's copy counted on its own with its own loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calltap.generate import GenOptions, generate
from calltap.relay import RELAY, RELAY_VARIANTS
from capture.decode import decode
from capture.pcapfile import open_capture
from correlate.sip import looks_like_sip
from tests.helpers import SCHEMA, load_index, pcap_bytes, read_wav, run_import

OPTS = GenOptions(calls=2, duration=6.0, seed=21, loss=0.01)
# Alignment asked of a relayed recording against the clean one: 20 ms at 8 kHz.
ALIGN = 160


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[int, bytes]], Path]:
    base = tmp_path_factory.mktemp("relay-clean")
    generate(str(base / "clean.pcap"), OPTS)
    frames = [(t, f) for t, _l, f in open_capture(str(base / "clean.pcap"))]
    run_import([base / "clean.pcap"], base / "out", jobs=1)
    return frames, base / "out"


def _lag(a: np.ndarray, b: np.ndarray, search: int = 800) -> tuple[int, float]:
    """Where ``b`` best matches ``a`` (samples) and how well (normalised correlation)."""
    n = min(len(a), len(b)) - 2 * search
    x = a[search:search + n].astype(np.float64)
    best, where = -1.0, 0
    for k in range(-search, search + 1, 4):
        y = b[search + k:search + k + n].astype(np.float64)
        c = float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))
        if c > best:
            best, where = c, k
    return where, best


@pytest.mark.parametrize("variant", ["relay", "relay-rewrite", "relay-loss"])
@pytest.mark.parametrize("hop", ["nearest-sender", "nearest-receiver"])
def test_one_clean_copy_per_direction(variant: str, hop: str,
                                      clean: tuple[list[tuple[int, bytes]], Path],
                                      tmp_path: Path) -> None:
    frames, clean_out = clean
    pcap = tmp_path / f"{variant}.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS[variant](frames)))
    run_import([pcap], tmp_path / "out", jobs=1, relay_hop=hop)
    got = {e["call_id"]: e for e in load_index(tmp_path / "out")}
    want = {e["call_id"]: e for e in load_index(clean_out)}
    assert got.keys() == want.keys() and len(got) == 2
    for cid, e in got.items():
        audio, _ = read_wav(tmp_path / "out" / e["audio"])
        ref, _ = read_wav(clean_out / want[cid]["audio"])
        for ch in (0, 1):
            lag, corr = _lag(ref[:, ch], audio[:, ch])
            assert abs(lag) <= ALIGN and corr > 0.8, (variant, hop, cid, ch, lag, corr)
        s = json.loads((tmp_path / "out" / e["summary"]).read_text())
        for d in s["directions"]:
            assert len(d["segments"]) == 1, d["segments"]  # not a jump per packet
            assert len(d["relay"]["other_hops"]) == 1
            src = d["flows"][0].split(" -> ")[0]
            # the recorded copy: the talker's own (nearest-sender) or the relay's output
            assert src.startswith("203.0.113.1:") == (hop == "nearest-receiver")
        if hop == "nearest-sender":  # the talkers' own packets: the clean recording
            assert np.array_equal(audio, ref)


def test_per_hop_loss_is_what_each_hop_lost(clean: tuple[list[tuple[int, bytes]], Path],
                                            tmp_path: Path) -> None:
    frames, _ = clean
    relayed = RELAY_VARIANTS["relay-loss"](frames)
    pcap = tmp_path / "relay-loss.pcap"
    pcap.write_bytes(pcap_bytes(relayed))
    # what the capture holds of each caller stream on each hop (by the caller's port):
    # sequence numbers, so loss counts as RFC 3550 counts it (a lost last packet is not
    # seen as lost)
    seqs: dict[tuple[int, int], list[int]] = {}
    for _t, f in relayed:
        r = decode(1, f)
        assert not isinstance(r, int)
        _p, src, dst, sport, dport, payload = r
        if looks_like_sip(payload) or sport % 2:
            continue
        seq = int.from_bytes(payload[2:4], "big")
        if dst == RELAY and src[:3] == bytes([192, 0, 2]):
            seqs.setdefault((1, sport), []).append(seq)
        elif src == RELAY and dst[:3] == bytes([198, 51, 100]):
            seqs.setdefault((2, dport - 10000), []).append(seq)

    def lost(hop: int, port: int) -> int:
        got = seqs[(hop, port)]
        return max(got) - min(got) + 1 - len(got)

    run_import([pcap], tmp_path / "out", jobs=1)
    for e in load_index(tmp_path / "out"):
        s = json.loads((tmp_path / "out" / e["summary"]).read_text())
        caller, callee = s["directions"]
        port = int(caller["flows"][0].split(" -> ")[0].split(":")[-1])
        other = caller["relay"]["other_hops"][0]
        assert caller["packets"] == len(seqs[(1, port)])
        assert other["packets"] == len(seqs[(2, port)])
        # the generator's 1% loss is before both hops; the relay's 5% on the second only
        assert caller["lost"] == lost(1, port)
        assert other["lost"] == lost(2, port) > caller["lost"]
        assert callee["relay"]["other_hops"][0]["lost"] == callee["lost"]


@pytest.mark.parametrize("variant, cfg", [
    ("b2bua", {}),  # RFC 7989 Session-ID
    ("b2bua-header", {"join_header": "X-CID"}),
    ("b2bua-transcode", {}),  # PCMU on the A-leg, PCMA on the B-leg
    ("b2bua-media", {"join_by_media": True}),  # no link but the (transcoded) audio
])
def test_b2bua_legs_make_one_recording(variant: str, cfg: dict[str, str],
                                       clean: tuple[list[tuple[int, bytes]], Path],
                                       tmp_path: Path) -> None:
    frames, clean_out = clean
    pcap = tmp_path / f"{variant}.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS[variant](frames)))
    run_import([pcap], tmp_path / "out", jobs=1, **cfg)
    got = {e["call_id"]: e for e in load_index(tmp_path / "out")}
    want = {e["call_id"]: e for e in load_index(clean_out)}
    assert got.keys() == want.keys()  # one recording per conversation, the A-leg's Call-ID
    for cid, e in got.items():
        assert e["legs"] == [f"b2b-{cid}"] and e["callee"] == want[cid]["callee"]
        audio, _ = read_wav(tmp_path / "out" / e["audio"])
        ref, _ = read_wav(clean_out / want[cid]["audio"])
        if variant in ("b2bua-transcode", "b2bua-media"):  # re-encoded on the B-leg
            for ch in (0, 1):
                lag, corr = _lag(ref[:, ch], audio[:, ch])
                assert abs(lag) <= ALIGN and corr > 0.95, (cid, ch, lag, corr)
        else:
            assert np.array_equal(audio, ref)
        s = json.loads((tmp_path / "out" / e["summary"]).read_text())
        assert [leg["call_id"] for leg in s["call"]["legs"]] == [f"b2b-{cid}"]
        for d in s["directions"]:  # the copy on the other leg: counted, not played
            assert len(d["segments"]) == 1 and len(d["relay"]["other_hops"]) == 1
        if SCHEMA.exists():
            import xmlschema

            xml = tmp_path / "out" / e["metadata"]
            xmlschema.XMLSchema(str(SCHEMA)).validate(str(xml))
            text = xml.read_text()
            assert text.count("<session ") == 2 and text.count("<group-ref>") == 2
            assert f"b2b-{cid}" in text


def test_legs_apart_point_at_each_other(clean: tuple[list[tuple[int, bytes]], Path],
                                        tmp_path: Path) -> None:
    frames, _ = clean
    pcap = tmp_path / "b2bua.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS["b2bua"](frames)))
    run_import([pcap], tmp_path / "out", jobs=1, join_legs=False)
    got = {e["call_id"]: e for e in load_index(tmp_path / "out")}
    assert len(got) == 4
    for cid, e in got.items():
        other = cid[4:] if cid.startswith("b2b-") else f"b2b-{cid}"
        assert e["related"] == [other] and e["legs"] == []
        assert f"<ct:related>{other}</ct:related>" in (tmp_path / "out" /
                                                      e["metadata"]).read_text()


def test_without_a_link_legs_stay_apart(clean: tuple[list[tuple[int, bytes]], Path],
                                        tmp_path: Path) -> None:
    frames, _ = clean
    pcap = tmp_path / "b2bua-header.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS["b2bua-header"](frames)))
    run_import([pcap], tmp_path / "out", jobs=1)  # no join_header configured
    assert len(load_index(tmp_path / "out")) == 4


def test_a_policy_rule_chooses_the_relayed_copy(clean: tuple[list[tuple[int, bytes]], Path],
                                                 tmp_path: Path) -> None:
    frames, _ = clean
    pcap = tmp_path / "relay.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS["relay"](frames)))
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "first call"\ncaller = { prefix = "sip:caller0" }\n'
                      'relay_hop = "nearest-receiver"\n')
    run_import([pcap], tmp_path / "out", jobs=1, policy=str(policy))
    for e in load_index(tmp_path / "out"):
        s = json.loads((tmp_path / "out" / e["summary"]).read_text())
        src = s["directions"][0]["flows"][0].split(" -> ")[0]
        # the rule's choice for the first call, the configured default for the other
        assert src.startswith("203.0.113.1:") == e["caller"].startswith("sip:caller0@")


def test_by_media_only_when_asked_and_only_matching_calls(
        clean: tuple[list[tuple[int, bytes]], Path], tmp_path: Path) -> None:
    frames, _ = clean
    pcap = tmp_path / "b2bua-media.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS["b2bua-media"](frames)))
    run_import([pcap], tmp_path / "apart", jobs=1)
    assert len(load_index(tmp_path / "apart")) == 4  # not asked: four calls
    # two unrelated calls (the clean capture's) are never joined by their audio
    plain = tmp_path / "plain.pcap"
    plain.write_bytes(pcap_bytes(frames))
    run_import([plain], tmp_path / "plain", jobs=1, join_by_media=True)
    assert [e["legs"] for e in load_index(tmp_path / "plain")] == [[], []]


def test_a_joined_legs_call_id_finds_its_recording(
        clean: tuple[list[tuple[int, bytes]], Path], tmp_path: Path) -> None:
    from calltap.catalog import Query, SqliteCatalog

    frames, _ = clean
    pcap = tmp_path / "b2bua.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS["b2bua"](frames)))
    run_import([pcap], tmp_path / "out", jobs=1)
    cat = SqliteCatalog.beside(str(tmp_path / "out"))
    for e in load_index(tmp_path / "out"):
        page = cat.search(Query(text=e["legs"][0]))
        assert [c["call_id"] for c in page.calls] == [e["call_id"]]
    cat.close()
