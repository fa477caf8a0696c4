"""Payload type to codec resolution and the decoders calltap runs in-process.

G.711 uses numpy tables, L16 and DVI4 are decoded here, LPC-10 by spandsp (writer.lpc10),
everything else goes through FFmpeg's own decoders via PyAV (no external binaries). Every
decoder returns mono int16 at its ``rate``; a stereo stream (L16/2, Opus) is mixed down,
since a direction is one channel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from writer import lpc10
from writer.adpcm import dvi4_decode
from writer.amr import AmrError, storage_frames
from writer.g711 import alaw_decode, ulaw_decode

Int16Array = npt.NDArray[np.int16]
EMPTY: Int16Array = np.zeros(0, np.int16)

# RFC 3551 section 6 static payload types: (encoding, clock rate, channels).
STATIC_PT: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}

# Payloads that carry no audio of their own: comfort noise (RFC 3389) and events (RFC 4733).
CONTROL = frozenset(("CN", "TELEPHONE-EVENT", "TONE"))
# Payloads whose RTP timestamp stays at the event start (RFC 4733 section 2.2.1).
EVENTS = frozenset(("TELEPHONE-EVENT", "TONE"))


class DecodeError(Exception):
    """A payload the codec could not decode (counted, and its time left silent)."""


class Decoder:
    """A codec calltap can decode: output sample rate and a payload -> samples function."""

    __slots__ = ("name", "clock", "rate", "decode")

    def __init__(self, name: str, clock: int, rate: int, decode: Callable[[bytes], Int16Array]):
        self.name = name
        """Codec name as shown in summaries, e.g. PCMU/8000."""
        self.clock = clock
        """RTP clock rate."""
        self.rate = rate
        """Sample rate of the decoded audio."""
        self.decode = decode
        """Payload bytes to mono int16 samples; raises DecodeError."""


def _fmtp(fmtp: str) -> dict[str, str]:
    out = {}
    for part in fmtp.replace(",", ";").split(";"):
        key, _, val = part.partition("=")
        if key.strip():
            out[key.strip().lower()] = val.strip()
    return out


def _to_mono(arr: npt.NDArray[np.generic], planar: bool, channels: int) -> Int16Array:
    """A PyAV frame array to mono int16."""
    data = arr.astype(np.float64)
    if planar:
        mono = data.mean(axis=0) if data.shape[0] > 1 else data[0]
    else:
        flat = data.reshape(-1)
        mono = flat.reshape(-1, channels).mean(axis=1) if channels > 1 else flat
    if arr.dtype.kind == "f":
        mono = mono * 32767.0
    out: Int16Array = np.clip(np.round(mono), -32768, 32767).astype(np.int16)
    return out


class _Av:
    """One FFmpeg decoder context: state is kept between the packets of a stream."""

    def __init__(self, codec: str, rate: int, layout: str, options: dict[str, str]) -> None:
        import av  # imported here: only calls that need it pay for loading FFmpeg

        self._av = av
        ctx = av.CodecContext.create(codec, "r")
        assert isinstance(ctx, av.AudioCodecContext)
        self.ctx = ctx
        self.ctx.sample_rate = rate
        self.ctx.layout = layout
        if options:
            self.ctx.options = options
        self.ctx.open()

    def decode(self, data: bytes) -> Int16Array:
        av = self._av
        try:
            frames = self.ctx.decode(av.Packet(data))
        except av.FFmpegError as exc:
            raise DecodeError(str(exc).split(":")[0]) from None
        out = []
        for f in frames:
            fmt = f.format
            out.append(_to_mono(f.to_ndarray(), fmt.is_planar, len(f.layout.channels)))
        return np.concatenate(out) if out else EMPTY


def _split(size: int, dec: Callable[[bytes], Int16Array]) -> Callable[[bytes], Int16Array]:
    """Decode a payload of several fixed-size frames one frame at a time."""

    def run(payload: bytes) -> Int16Array:
        if not payload or len(payload) % size:
            raise DecodeError(f"payload of {len(payload)} bytes is not whole {size}-byte frames")
        parts = [dec(payload[i : i + size]) for i in range(0, len(payload), size)]
        return np.concatenate(parts)

    return run


def _g729(clock: int) -> Decoder:
    av = _Av("g729", 8000, "mono", {})

    def run(payload: bytes) -> Int16Array:
        # G.729 Annex B: a 2-byte SID frame may end the packet; it stands for 10 ms of
        # comfort noise, rendered as silence.
        sid = len(payload) % 10 == 2
        body = payload[:-2] if sid else payload
        if len(body) % 10 or not payload:
            raise DecodeError(f"G.729 payload of {len(payload)} bytes")
        parts = [av.decode(body)] if body else []
        if sid:
            parts.append(np.zeros(80, np.int16))
        return np.concatenate(parts)

    return Decoder("G729/8000", clock, 8000, run)


def _ilbc(clock: int, fmtp: dict[str, str]) -> Decoder:
    decs: dict[int, _Av] = {}
    preferred = 50 if fmtp.get("mode") == "30" else 38

    def run(payload: bytes) -> Int16Array:
        # RFC 3952: 38-byte frames (20 ms) or 50-byte frames (30 ms); the size tells which.
        size = preferred if len(payload) % preferred == 0 else 88 - preferred
        if not payload or len(payload) % size:
            raise DecodeError(f"iLBC payload of {len(payload)} bytes")
        dec = decs.get(size)
        if dec is None:
            dec = decs[size] = _Av("ilbc", 8000, "mono", {"block_align": str(size)})
        return _split(size, dec.decode)(payload)

    return Decoder("iLBC/8000", clock, 8000, run)


def _amr(clock: int, wideband: bool, fmtp: dict[str, str]) -> Decoder:
    rate = 16000 if wideband else 8000
    av = _Av("amrwb" if wideband else "amrnb", rate, "mono", {})
    octet = fmtp.get("octet-align") == "1"
    silence = np.zeros(rate // 50, np.int16)

    def run(payload: bytes) -> Int16Array:
        try:
            frames = storage_frames(payload, wideband, octet)
        except AmrError as exc:
            raise DecodeError(str(exc)) from None
        parts = [av.decode(f) if len(f) > 1 else silence for f in frames]
        return np.concatenate(parts) if parts else EMPTY

    return Decoder("AMR-WB/16000" if wideband else "AMR/8000", clock, rate, run)


def _l16(clock: int, channels: int) -> Decoder:
    def run(payload: bytes) -> Int16Array:
        usable = len(payload) - len(payload) % (2 * channels)
        x = np.frombuffer(payload[:usable], dtype=">i2").astype(np.int32)
        if channels > 1:
            x = x.reshape(-1, channels).mean(axis=1).astype(np.int32)
        return x.astype(np.int16)

    return Decoder(f"L16/{clock}" + (f"/{channels}" if channels > 1 else ""), clock, clock, run)


def decoder_for(name: str, clock: int, channels: int = 1, fmtp: str = "") -> Decoder | None:
    """The decoder for an encoding (upper-case name from SDP), or None when there is none."""
    opts = _fmtp(fmtp)
    if name == "PCMU":
        return Decoder("PCMU/8000", clock, 8000, ulaw_decode)
    if name == "PCMA":
        return Decoder("PCMA/8000", clock, 8000, alaw_decode)
    if name == "L16" and clock > 0:
        return _l16(clock, max(1, channels))
    if name == "DVI4" and clock > 0:
        return Decoder(f"DVI4/{clock}", clock, clock, dvi4_decode)
    if name == "G722":
        # RFC 3551 section 4.5.2: the RTP clock says 8000 but the audio is 16 kHz.
        return Decoder("G722/16000", clock, 16000, _Av("g722", 16000, "mono", {}).decode)
    if name in ("G729", "G729A", "G729B", "G729AB"):
        return _g729(clock)
    if name == "GSM":
        return Decoder("GSM/8000", clock, 8000, _split(33, _Av("gsm", 8000, "mono", {}).decode))
    if name == "LPC" and lpc10.available():
        return Decoder("LPC/8000", clock, 8000, lpc10.Lpc10Decoder().decode)
    if name == "G723":
        return Decoder("G723/8000", clock, 8000, _Av("g723_1", 8000, "mono", {}).decode)
    if name == "ILBC":
        return _ilbc(clock, opts)
    if name in ("AMR", "AMR-WB"):
        return _amr(clock, name == "AMR-WB", opts)
    if name == "OPUS":
        return Decoder("opus/48000", clock, 48000, _Av("opus", 48000, "stereo", {}).decode)
    if name == "SPEEX" and clock in (8000, 16000, 32000):
        return Decoder(f"speex/{clock}", clock, clock, _Av("speex", clock, "mono", {}).decode)
    if name.startswith(("G726-", "AAL2-G726-")):
        bits = name.rsplit("-", 1)[1]
        if bits not in ("16", "24", "32", "40"):
            return None
        # RFC 3551 section 4.5.4 packs G.726 codewords little-endian; AAL2 (ITU I.366.2)
        # big-endian; FFmpeg names them g726le and g726.
        codec = "g726" if name.startswith("AAL2") else "g726le"
        av = _Av(codec, 8000, "mono", {"bits_per_coded_sample": str(int(bits) // 8)})
        return Decoder(f"{name}/8000", clock, 8000, av.decode)
    return None


def resolve(pt: int, rtpmap: dict[int, tuple[str, int, int]]) -> tuple[str, int, int]:
    """(encoding upper-cased, clock rate, channels) of a payload type; ('', 0, 0) if unknown."""
    entry = rtpmap.get(pt)
    if entry is None and pt < 96:
        entry = STATIC_PT.get(pt)
    if entry is None:
        return "", 0, 0
    return entry[0].upper(), entry[1], entry[2]
