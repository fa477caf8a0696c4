from __future__ import annotations

import pytest

from writer.codecs import decoder_for, resolve


def test_resolve_static_and_dynamic() -> None:
    assert resolve(0, {}) == ("PCMU", 8000, 1)
    assert resolve(8, {}) == ("PCMA", 8000, 1)
    assert resolve(96, {96: ("pcma", 8000, 1)}) == ("PCMA", 8000, 1)
    assert resolve(96, {}) == ("", 0, 0)


def test_decoders() -> None:
    dec = decoder_for("PCMU", 8000)
    assert dec is not None and dec.rate == 8000 and len(dec.decode(b"\xff" * 160)) == 160
    assert decoder_for("NO-SUCH-CODEC", 8000) is None
    assert decoder_for("QCELP", 8000) is None


def test_lpc10_frames() -> None:
    from writer import lpc10

    if not lpc10.available():
        pytest.skip("libspandsp is not installed (.ci/setup installs it)")
    dec = decoder_for("LPC", 8000)
    assert dec is not None and dec.name == "LPC/8000"
    assert len(dec.decode(bytes(28))) == 720  # four 22.5 ms frames
    assert len(dec.decode(bytes(10))) == 180  # a torn frame is left out
    assert len(dec.decode(b"")) == 0
