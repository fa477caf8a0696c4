from __future__ import annotations

import os
import struct

import pylibsrtp

from writer.aescm import AesCm
from writer.srtp import Decryptor


def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc) + \
        bytes([seq % 251]) * 160


def test_aes128_matches_libsrtp_through_a_rollover() -> None:
    key = os.urandom(30)
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    session = pylibsrtp.Session(policy=policy)
    plain = [rtp(s) for s in range(65500, 65600)]
    sealed = [session.protect(p) for p in plain]
    ours = AesCm(key, 16, 10)  # the same algorithm with a 128-bit key: checks it bit for bit
    assert [ours.unprotect(p) for p in sealed] == plain
    assert [AesCm(key, 16, 10).protect(p) for p in plain[:30]] == sealed[:30]


def test_aes256_round_trip_and_wrong_key() -> None:
    key = os.urandom(46)
    sender = AesCm(key, 32, 10)
    plain = [rtp(s, 0xBEEF) for s in range(65530, 65540)]
    sealed = [sender.protect(p) for p in plain]
    dec = Decryptor("AES_256_CM_HMAC_SHA1_80", key)
    assert [dec.unprotect(p) for p in sealed] == plain
    wrong = Decryptor("AES_256_CM_HMAC_SHA1_80", os.urandom(46))
    assert all(wrong.unprotect(p) is None for p in sealed)
    short = AesCm(key, 32, 4)
    assert len(short.protect(rtp(1))) == 12 + 160 + 4
