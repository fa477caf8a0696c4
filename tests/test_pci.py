"""PCI DTMF masking: every DTMF digit's tones are found (8 and 16 kHz, with noise) and
speech is left alone; the mask silences them wherever blocks are cut; an import with
`pci_dtmf` silences in-band tones and RFC 4733 event periods, changes nothing else in the
audio, and keeps only "*" for each digit in the summary, index, metadata, view and SIP
files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calltap.generate import GenOptions, generate, write_rtp_pcap
from tests.helpers import ROOT, load_index, read_wav, run_import
from tests.test_e2e_kamailio import _speech
from writer.pci import HIGH, LOW, DtmfMask, redact_sip, tone_frames

KEYS = "123A456B789C*0#D"


def tone(digit: str, rate: int, ms: int, level: float = 8000.0) -> np.ndarray:
    k = KEYS.index(digit)
    t = np.arange(int(rate * ms / 1000)) / rate
    return level * (np.sin(2 * np.pi * LOW[k // 4] * t) + np.sin(2 * np.pi * HIGH[k % 4] * t))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_every_digit_is_found_and_speech_is_not(rate: int) -> None:
    rng = np.random.default_rng(1)
    for d in KEYS:
        x = np.concatenate([np.zeros(rate // 10), tone(d, rate, 60), np.zeros(rate // 10)])
        x += rng.normal(0, 50, len(x))
        assert tone_frames(x, rate).sum() >= 2, d
    speech = np.concatenate([_speech(ROOT / "pcaps/sipp/caller-speech.pcap"),
                             _speech(ROOT / "pcaps/sipp/callee-speech.pcap")])
    if rate == 8000:
        assert tone_frames(speech, rate).sum() == 0
    t = np.arange(rate) / rate
    assert tone_frames(8000 * np.sin(2 * np.pi * 1000 * t), rate).sum() == 0  # one tone
    assert tone_frames(tone("5", rate, 20), rate).sum() == 0  # too short to be a digit


def test_the_mask_silences_tones_whatever_the_block_sizes() -> None:
    rate = 8000
    rng = np.random.default_rng(2)
    left = rng.normal(0, 300, rate * 3)
    left[rate:rate + 800] += tone("9", rate, 100)
    audio = np.stack([left, rng.normal(0, 300, rate * 3)], axis=1).astype(np.int16)
    got: list[np.ndarray] = []
    mask = DtmfMask(rate, 0, got.append, lambda: [(2 * 10**9, 2 * 10**9 + 50_000_000)])
    pos = 0
    while pos < len(audio):
        n = int(rng.integers(1, 700))
        mask(audio[pos:pos + n])
        pos += n
    mask.finish()
    out = np.concatenate(got)
    assert out.shape == audio.shape
    silent = np.flatnonzero((out == 0).all(axis=1))
    # the tone (1.0-1.1 s), both channels, with guards; the event at 2.0-2.05 s too
    assert silent.min() <= rate and silent.max() >= rate + 800
    assert ((out[rate:rate + 800] == 0).all())
    assert (out[2 * rate:2 * rate + 400] == 0).all()
    keep = np.ones(len(audio), bool)
    keep[silent] = False
    assert (out[keep] == audio[keep]).all()
    assert len(silent) < int(0.5 * rate)  # nothing else went silent


def test_sip_info_digits_are_hidden() -> None:
    relay = (b"INFO sip:a@b SIP/2.0\r\nContent-Type: application/dtmf-relay\r\n\r\n"
             b"Signal=5\r\nDuration=160\r\n")
    assert b"Signal=*\r\n" in redact_sip(relay) and b"5" not in redact_sip(relay).split(
        b"\r\n\r\n")[1]
    plain = b"INFO sip:a@b SIP/2.0\r\nContent-Type: application/dtmf\r\n\r\n7"
    assert redact_sip(plain).endswith(b"\r\n\r\n*")


def test_in_band_tones_are_silenced_and_nothing_else(tmp_path: Path) -> None:
    rate = 8000
    speech = _speech(ROOT / "pcaps/sipp/caller-speech.pcap")
    pcm = speech.copy()
    spots = [int(1.0 * rate), int(2.5 * rate), int(4.0 * rate)]
    for at, d in zip(spots, "4*7", strict=True):
        pcm[at:at + 640] = tone(d, rate, 80)
    pcap = tmp_path / "tones.pcap"
    write_rtp_pcap(str(pcap), np.clip(pcm, -32768, 32767).astype(np.int16), "PCMU",
                   ssrc=0x1234, seed=3)
    run_import([pcap], tmp_path / "plain", jobs=1)
    run_import([pcap], tmp_path / "pci", jobs=1, pci_dtmf=True)
    a, _ = read_wav(tmp_path / "plain" / load_index(tmp_path / "plain")[0]["audio"])
    b, _ = read_wav(tmp_path / "pci" / load_index(tmp_path / "pci")[0]["audio"])
    assert a.shape == b.shape
    ch = int(np.argmax(np.abs(a).sum(axis=0)))  # the channel the stream landed in
    changed = np.flatnonzero((a != b).any(axis=1))
    start = int(np.flatnonzero(np.abs(a[:, ch]) > 0)[0]) - 0  # the stream's first sample
    for at in spots:  # each tone is gone, in every channel
        seg = b[start + at + 80:start + at + 560]
        assert (seg == 0).all(), at
    assert (b[changed] == 0).all()  # what changed was silenced, nothing else
    assert len(changed) < 3 * 0.25 * rate  # three tones and their guards, no more
    s = json.loads((tmp_path / "pci" / load_index(tmp_path / "pci")[0]["summary"]).read_text())
    assert 0.2 < s["pci_dtmf"]["silenced_seconds"] < 0.75


def test_rfc4733_digits_keep_their_times_not_their_values(tmp_path: Path) -> None:
    pcap = tmp_path / "ev.pcap"
    # the caller keys *7 at 1 s and *8 at 2 s as RFC 4733 events (no pause policy here)
    generate(str(pcap), GenOptions(calls=1, duration=4.0, seed=5, pause_at=1.0,
                                   resume_at=2.0, pause_by="dtmf"))
    run_import([pcap], tmp_path / "plain", jobs=1)
    run_import([pcap], tmp_path / "pci", jobs=1, pci_dtmf=True)
    e_plain, e_pci = load_index(tmp_path / "plain")[0], load_index(tmp_path / "pci")[0]
    assert e_plain["dtmf"] == "*7*8" and e_pci["dtmf"] == "****"
    s_plain = json.loads((tmp_path / "plain" / e_plain["summary"]).read_text())
    s_pci = json.loads((tmp_path / "pci" / e_pci["summary"]).read_text())
    assert [x["offset"] for x in s_pci["dtmf"]] == [x["offset"] for x in s_plain["dtmf"]]
    assert {x["digit"] for x in s_pci["dtmf"]} == {"*"}
    xml = (tmp_path / "pci" / e_pci["metadata"]).read_text()
    assert ">7<" not in xml and ">8<" not in xml and xml.count(">*<") == 4
    view = json.loads((tmp_path / "pci" / e_pci["view"]).read_text())
    assert {x["digit"] for x in view["dtmf"]} == {"*"}
    audio, rate = read_wav(tmp_path / "pci" / e_pci["audio"])
    zero = s_pci["audio_start_ns"]
    for x in s_pci["dtmf"]:  # each event's period is silent in both channels
        a = int(x["offset"] * rate)
        n = int(x["duration_ms"] / 1000 * rate)
        assert (audio[a:a + n] == 0).all(), x
    assert zero and s_pci["pci_dtmf"]["digits_redacted"] == 4
