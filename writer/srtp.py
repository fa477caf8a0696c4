"""SRTP decryption (RFC 3711) with SDES keys (RFC 4568) or keys the user supplies, through
libsrtp (pylibsrtp). A stream without a usable key is recorded as silence with a reason;
a wrong key shows as failed authentication, never as noise."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from capture.decode import parse_ip
from writer.aescm import AesCm

# RFC 4568 / RFC 6188 / RFC 7714 suite names -> (libsrtp profile name, master key + salt
# length). AES_256_CM (RFC 6188) has no profile in libsrtp's Python binding: calltap's own
# AES-CM implementation (writer.aescm) handles those.
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": ("SRTP_PROFILE_AES128_CM_SHA1_80", 30),
    "AES_CM_128_HMAC_SHA1_32": ("SRTP_PROFILE_AES128_CM_SHA1_32", 30),
    "AES_256_CM_HMAC_SHA1_80": ("", 46),
    "AES_256_CM_HMAC_SHA1_32": ("", 46),
    "AEAD_AES_128_GCM": ("SRTP_PROFILE_AEAD_AES_128_GCM", 28),
    "AEAD_AES_256_GCM": ("SRTP_PROFILE_AEAD_AES_256_GCM", 44),
}
# Replay window of the receiving context: deeper than any reordering a mirror shows.
REPLAY_WINDOW = 1024


class SrtpKeyError(ValueError):
    """A key specification that cannot be used."""


def parse_crypto(value: str) -> tuple[int, str, bytes] | None:
    """(tag, suite, master key||salt) of an a=crypto value (RFC 4568 section 9.1), or None
    when it has no inline key calltap can use."""
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    suite = parts[1].upper()
    params = parts[2]
    if not params.startswith("inline:"):
        return None
    b64 = params[len("inline:"):].split("|", 1)[0]
    try:
        key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return int(parts[0]), suite, key


class SrtpKey:
    """A user-supplied key: which streams it is for, the suite and the master key||salt."""

    __slots__ = ("ssrc", "endpoint", "suite", "key")

    def __init__(self, ssrc: int | None, endpoint: tuple[bytes, int] | None, suite: str,
                 key: bytes) -> None:
        self.ssrc = ssrc
        """Only for this SSRC (None: any)."""
        self.endpoint = endpoint
        """Only for flows from or to this address and port (None: any)."""
        self.suite = suite
        self.key = key

    def matches(self, ssrc: int, endpoints: set[tuple[bytes, int]]) -> bool:
        if self.ssrc is not None and self.ssrc != ssrc:
            return False
        return self.endpoint is None or self.endpoint in endpoints


def parse_key_spec(spec: str) -> SrtpKey:
    """``[SELECTOR=]SUITE:BASE64`` with SELECTOR ``0xSSRC`` or ``ADDRESS:PORT`` ([v6]:port)."""
    selector, sep, rest = spec.partition("=")
    if not sep or ":" not in selector and not selector.lower().startswith("0x"):
        selector, rest = "", spec
    suite, _, b64 = rest.partition(":")
    suite = suite.upper()
    if suite not in SUITES:
        raise SrtpKeyError(f"{spec!r}: unknown suite {suite!r}; one of {', '.join(SUITES)}")
    b64 = b64.removeprefix("inline:")
    try:
        key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SrtpKeyError(f"{spec!r}: the key is not base64") from None
    if len(key) != SUITES[suite][1]:
        raise SrtpKeyError(f"{spec!r}: {suite} needs {SUITES[suite][1]} bytes of key and salt, "
                           f"got {len(key)}")
    ssrc = endpoint = None
    if selector.lower().startswith("0x"):
        try:
            ssrc = int(selector, 16)
        except ValueError:
            raise SrtpKeyError(f"{spec!r}: bad SSRC {selector!r}") from None
    elif selector:
        host, _, port = selector.rpartition(":")
        addr = parse_ip(host.strip("[]"))
        if addr is None or not port.isdigit():
            raise SrtpKeyError(f"{spec!r}: bad address:port {selector!r}")
        endpoint = (addr, int(port))
    return SrtpKey(ssrc, endpoint, suite, key)


class Decryptor:
    """One receiving SRTP context (any SSRC) for a suite and key."""

    def __init__(self, suite: str, key: bytes) -> None:
        import pylibsrtp

        profile, size = SUITES[suite]
        if len(key) != size:
            raise SrtpKeyError(f"{suite} needs {size} bytes of key and salt, got {len(key)}")
        self._own: AesCm | None = None
        if not profile:
            self._own = AesCm(key, 32, 10 if suite.endswith("_80") else 4)
            return
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                  srtp_profile=getattr(pylibsrtp.Policy, profile))
        policy.window_size = REPLAY_WINDOW
        self._session: Any = pylibsrtp.Session(policy=policy)
        self._error: type[Exception] = pylibsrtp.Error

    def unprotect(self, packet: bytes) -> bytes | None:
        """The plain RTP packet, or None when authentication (or replay) fails."""
        if self._own is not None:
            return self._own.unprotect(packet)
        try:
            plain: bytes = self._session.unprotect(packet)
        except self._error:
            return None
        return plain
