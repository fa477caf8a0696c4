"""SRTP AES Counter Mode with HMAC-SHA1 (RFC 3711 sections 4.1.1, 4.2, 4.3), for key lengths
libsrtp's Python binding does not offer (AES_256_CM_HMAC_SHA1_80/32, RFC 6188).

Receiving side only, plus ``protect`` for tests and the generator. The rollover counter is
estimated as RFC 3711 appendix A describes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

LABEL_ENCRYPTION, LABEL_AUTH, LABEL_SALT = 0x00, 0x01, 0x02
SALT_LEN = 14
AUTH_KEY_LEN = 20


def _keystream(key: bytes, iv: int, length: int) -> bytes:
    # loaded here: every process loads this module, few see SRTP (see writer.seal)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(16, "big"))).encryptor()
    return enc.update(b"\0" * length) + enc.finalize()


def derive(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """Session key derivation (RFC 3711 section 4.3.1, key_derivation_rate 0)."""
    x = int.from_bytes(master_salt, "big") ^ (label << 48)
    return _keystream(master_key, x << 16, length)


class AesCm:
    """One SRTP context (any SSRC, each with its own rollover counter)."""

    def __init__(self, key_and_salt: bytes, key_len: int, tag_len: int) -> None:
        master_key, master_salt = key_and_salt[:key_len], key_and_salt[key_len:]
        if len(master_salt) != SALT_LEN:
            raise ValueError(f"master salt must be {SALT_LEN} bytes")
        self._ke = derive(master_key, master_salt, LABEL_ENCRYPTION, key_len)
        self._ka = derive(master_key, master_salt, LABEL_AUTH, AUTH_KEY_LEN)
        self._ks = int.from_bytes(derive(master_key, master_salt, LABEL_SALT, SALT_LEN), "big")
        self.tag_len = tag_len
        self._roc: dict[int, tuple[int, int]] = {}  # SSRC -> (ROC, highest sequence)

    def _header_len(self, pkt: bytes) -> int:
        n = 12 + (pkt[0] & 0x0F) * 4
        if pkt[0] & 0x10 and len(pkt) >= n + 4:
            n += 4 + struct.unpack_from("!H", pkt, n + 2)[0] * 4
        return n

    def _crypt(self, pkt: bytes, ssrc: int, index: int) -> bytes:
        start = self._header_len(pkt)
        iv = (self._ks << 16) ^ (ssrc << 64) ^ (index << 16)
        body = pkt[start:]
        stream = _keystream(self._ke, iv, len(body))
        mixed = int.from_bytes(body, "big") ^ int.from_bytes(stream, "big")
        return pkt[:start] + mixed.to_bytes(len(body), "big")

    def _tag(self, data: bytes, roc: int) -> bytes:
        return hmac.new(self._ka, data + struct.pack("!I", roc), hashlib.sha1).digest()[
            : self.tag_len
        ]

    def unprotect(self, pkt: bytes) -> bytes | None:
        if len(pkt) < 12 + self.tag_len:
            return None
        seq, ssrc = struct.unpack_from("!H", pkt, 2)[0], struct.unpack_from("!I", pkt, 8)[0]
        roc, s_l = self._roc.get(ssrc, (0, seq))
        # RFC 3711 appendix A: guess the rollover counter from the highest sequence seen
        if s_l < 32768:
            v = roc - 1 if seq - s_l > 32768 else roc
        else:
            v = roc + 1 if s_l - 32768 > seq else roc
        v &= 0xFFFFFFFF
        body, tag = pkt[: -self.tag_len], pkt[-self.tag_len :]
        if not hmac.compare_digest(self._tag(body, v), tag):
            return None
        if ssrc not in self._roc or v > roc or (v == roc and seq > s_l):
            self._roc[ssrc] = (v, seq)
        return self._crypt(body, ssrc, (v << 16) | seq)

    def protect(self, pkt: bytes) -> bytes:
        seq, ssrc = struct.unpack_from("!H", pkt, 2)[0], struct.unpack_from("!I", pkt, 8)[0]
        roc, last = self._roc.get(ssrc, (0, seq))
        if seq < last and last - seq > 32768:
            roc += 1
        self._roc[ssrc] = (roc, seq)
        sealed = self._crypt(pkt, ssrc, (roc << 16) | seq)
        return sealed + self._tag(sealed, roc)
