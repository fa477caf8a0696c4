from __future__ import annotations

from correlate.sipinfo import info_digit


def test_dtmf_relay_and_dtmf() -> None:
    assert info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n") == ("5", 160.0)
    assert info_digit("application/dtmf-relay", b"Signal=#\r\n") == ("#", 0.0)
    assert info_digit("application/dtmf", b"11") == ("#", 0.0)
    assert info_digit("application/dtmf", b"*") == ("*", 0.0)


def test_not_dtmf() -> None:
    assert info_digit("application/dtmf-relay", b"Duration=160") is None
    assert info_digit("application/media_control+xml", b"<x/>") is None
    assert info_digit("application/dtmf", b"") is None
