from __future__ import annotations

import base64
import struct

import pylibsrtp
import pytest

from tests.helpers import ip4
from writer.srtp import Decryptor, SrtpKeyError, parse_crypto, parse_key_spec

KEY = bytes(range(30))
B64 = base64.b64encode(KEY).decode()


def protect(packets: list[bytes], key: bytes = KEY) -> list[bytes]:
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    session = pylibsrtp.Session(policy=policy)
    return [session.protect(p) for p in packets]


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xABCDEF) + bytes([seq % 256]) * 160


def test_parse_crypto() -> None:
    assert parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20|1:32") == (
        1, "AES_CM_128_HMAC_SHA1_80", KEY)
    assert parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64") is None
    assert parse_crypto("x AES_CM_128_HMAC_SHA1_80 inline:" + B64) is None
    assert parse_crypto("2 AES_CM_128_HMAC_SHA1_32 uri:http://x") is None


def test_key_specs() -> None:
    k = parse_key_spec(f"0xDEADBEEF=AES_CM_128_HMAC_SHA1_80:{B64}")
    assert k.ssrc == 0xDEADBEEF and k.endpoint is None and k.key == KEY
    k = parse_key_spec(f"192.0.2.1:4000=AES_CM_128_HMAC_SHA1_32:inline:{B64}")
    assert k.endpoint == (ip4("192.0.2.1"), 4000) and k.matches(5, {(ip4("192.0.2.1"), 4000)})
    assert not k.matches(5, set())
    k = parse_key_spec(f"AES_CM_128_HMAC_SHA1_80:{B64}")
    assert k.ssrc is None and k.endpoint is None and k.matches(1, set())
    for bad in ("AES_XYZ:" + B64, "AES_CM_128_HMAC_SHA1_80:***", "AES_CM_128_HMAC_SHA1_80:AAAA",
                f"0xZZ=AES_CM_128_HMAC_SHA1_80:{B64}", f"nohost:x=AES_CM_128_HMAC_SHA1_80:{B64}"):
        with pytest.raises(SrtpKeyError):
            parse_key_spec(bad)


def test_decrypt_and_wrong_key() -> None:
    plain = [rtp(s) for s in range(1, 50)]
    sealed = protect(plain)
    dec = Decryptor("AES_CM_128_HMAC_SHA1_80", KEY)
    assert [dec.unprotect(p) for p in sealed] == plain
    wrong = Decryptor("AES_CM_128_HMAC_SHA1_80", bytes(30))
    assert all(wrong.unprotect(p) is None for p in sealed)


def test_rollover_counter_is_tracked() -> None:
    plain = [rtp(s & 0xFFFF) for s in range(65500, 65600)]
    dec = Decryptor("AES_CM_128_HMAC_SHA1_80", KEY)
    assert all(dec.unprotect(p) is not None for p in protect(plain))
