"""Acceptance for codecs: audio encoded by an independent encoder (the ffmpeg command line,
or the codec's reference library), packetised by the project's generator, recorded, and
compared with a direct decode of the same bitstream."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from calltap.generate import codec_call
from tests.helpers import load_index, read_wav, run_import

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
TEXT = "The recorder keeps every word. Seven, eight, nine. Quality matters to us."


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About four seconds of espeak-ng speech as a WAV file."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(path), TEXT], check=True)
    return path


def ff(*args: str) -> None:
    subprocess.run([FFMPEG or "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def raw_s16(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<i2")


def packets_from_container(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as box:
        return [bytes(p) for p in box.demux(audio=0) if p.size]


def record(tmp: Path, codec: str, clock: int, pt: int, payloads: list[bytes],
           steps: list[int], fmtp: str = "", channels: int = 1) -> tuple[np.ndarray, int]:
    pcap = tmp / "call.pcap"
    codec_call(str(pcap), codec, clock, pt, payloads, steps, fmtp, channels)
    out = tmp / "rec"
    run_import([pcap], out, jobs=1)
    (entry,) = load_index(out)
    audio, rate = read_wav(out / entry["audio"])
    assert not audio[:, 1].any()
    return audio[:, 0], rate


def fast_snr_db(got: np.ndarray, ref: np.ndarray) -> float:
    """SNR at the lag of maximum cross-correlation (found by FFT)."""
    g = got.astype(np.float64)
    r = ref.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(g) + len(r))))
    corr = np.fft.irfft(np.fft.rfft(g, size) * np.conj(np.fft.rfft(r, size)), size)
    lag = int(np.argmax(corr))
    if lag > size // 2:
        lag -= size
    a = g[max(0, lag):]
    b = r[max(0, -lag):]
    m = min(len(a), len(b))
    err = np.sum((a[:m] - b[:m]) ** 2)
    return float(10 * np.log10(np.sum(b[:m] ** 2) / max(err, 1e-9)))


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i: i + size] for i in range(0, len(data) - size + 1, size)]


# name in SDP, clock, payload type, output rate, ffmpeg encode args, raw demuxer args for the
# reference decode (None: encode into Matroska and take its packets), bytes per 20 ms packet
SAMPLE_CODECS = [
    ("G722", 8000, 9, 16000, ["-ar", "16000", "-c:a", "g722", "-f", "g722"], ["-f", "g722"], 160),
    ("G726-16", 8000, 96, 8000, ["-ar", "8000", "-c:a", "g726le", "-b:a", "16k", "-f", "g726le"],
     ["-f", "g726le", "-code_size", "2", "-sample_rate", "8000"], 40),
    ("G726-24", 8000, 96, 8000, ["-ar", "8000", "-c:a", "g726le", "-b:a", "24k", "-f", "g726le"],
     ["-f", "g726le", "-code_size", "3", "-sample_rate", "8000"], 60),
    ("G726-32", 8000, 96, 8000, ["-ar", "8000", "-c:a", "g726le", "-b:a", "32k", "-f", "g726le"],
     ["-f", "g726le", "-code_size", "4", "-sample_rate", "8000"], 80),
    ("G726-40", 8000, 96, 8000, ["-ar", "8000", "-c:a", "g726le", "-b:a", "40k", "-f", "g726le"],
     ["-f", "g726le", "-code_size", "5", "-sample_rate", "8000"], 100),
    ("AAL2-G726-32", 8000, 97, 8000, ["-ar", "8000", "-c:a", "g726", "-b:a", "32k", "-f", "g726"],
     ["-f", "g726", "-code_size", "4", "-sample_rate", "8000"], 80),
    ("AAL2-G726-40", 8000, 97, 8000, ["-ar", "8000", "-c:a", "g726", "-b:a", "40k", "-f", "g726"],
     ["-f", "g726", "-code_size", "5", "-sample_rate", "8000"], 100),
    ("GSM", 8000, 3, 8000, ["-ar", "8000", "-c:a", "libgsm", "-f", "gsm"], ["-f", "gsm"], 33),
]


@pytest.mark.parametrize("spec", SAMPLE_CODECS, ids=[s[0] for s in SAMPLE_CODECS])
def test_stream_codecs(spec: tuple, speech: Path, tmp_path: Path) -> None:  # type: ignore[type-arg]
    name, clock, pt, rate, enc, dec, size = spec
    bitstream = tmp_path / "enc.bin"
    ff("-i", str(speech), "-ac", "1", *enc, str(bitstream))
    ref_raw = tmp_path / "ref.raw"
    ff(*dec, "-i", str(bitstream), "-f", "s16le", "-ac", "1", str(ref_raw))
    payloads = split(bitstream.read_bytes(), size)
    got, got_rate = record(tmp_path, name, clock, pt, payloads, [160] * len(payloads))
    assert got_rate == rate
    snr = fast_snr_db(got, raw_s16(ref_raw))
    print(f"{name}: SNR {snr:.1f} dB")
    assert snr >= 30.0


# name, clock, payload type, output rate, encode args into Matroska, RTP ticks per packet, fmtp
FRAME_CODECS = [
    ("opus", 48000, 111, 48000, ["-ar", "48000", "-c:a", "libopus", "-b:a", "32k",
                                 "-frame_duration", "20"], 960, ""),
    ("opus-stereo", 48000, 111, 48000, ["-ar", "48000", "-ac", "2", "-c:a", "libopus",
                                        "-b:a", "48k", "-frame_duration", "20"], 960, ""),
    ("speex", 8000, 98, 8000, ["-ar", "8000", "-c:a", "libspeex", "-frames_per_packet", "1"],
     160, ""),
    ("speex", 16000, 98, 16000, ["-ar", "16000", "-c:a", "libspeex", "-frames_per_packet", "1"],
     320, ""),
    ("speex", 32000, 98, 32000, ["-ar", "32000", "-c:a", "libspeex", "-frames_per_packet", "1"],
     640, ""),
    ("G723", 8000, 4, 8000, ["-ar", "8000", "-c:a", "g723_1", "-b:a", "6.3k"], 240, ""),
]


@pytest.mark.parametrize("spec", FRAME_CODECS, ids=[f"{s[0]}-{s[1]}" for s in FRAME_CODECS])
def test_frame_codecs(spec: tuple, speech: Path, tmp_path: Path) -> None:  # type: ignore[type-arg]
    name, clock, pt, rate, enc, step, fmtp = spec
    box = tmp_path / "enc.mka"
    channels = 2 if name.endswith("-stereo") else 1
    extra = [] if channels == 2 else ["-ac", "1"]
    ff("-i", str(speech), *extra, *enc, str(box))
    ref_raw = tmp_path / "ref.raw"
    ff("-i", str(box), "-f", "s16le", "-ac", "1", "-ar", str(rate), str(ref_raw))
    payloads = packets_from_container(box)
    sdp_name = name.split("-")[0]
    got, got_rate = record(tmp_path, sdp_name, clock, pt, payloads, [step] * len(payloads),
                           fmtp, 2 if sdp_name == "opus" else 1)
    assert got_rate == rate
    snr = fast_snr_db(got, raw_s16(ref_raw))
    print(f"{name}/{clock}: SNR {snr:.1f} dB")
    assert snr >= 30.0


@pytest.mark.parametrize("law,codec,pt", [("mulaw", "PCMU", 0), ("alaw", "PCMA", 8)])
def test_g711_is_bit_exact(law: str, codec: str, pt: int, speech: Path, tmp_path: Path) -> None:
    enc = tmp_path / "enc.raw"
    ff("-i", str(speech), "-ac", "1", "-ar", "8000", "-f", law, str(enc))
    ref_raw = tmp_path / "ref.raw"
    ff("-f", law, "-ar", "8000", "-i", str(enc), "-f", "s16le", str(ref_raw))
    payloads = split(enc.read_bytes(), 160)
    got, _ = record(tmp_path, codec, 8000, pt, payloads, [160] * len(payloads))
    ref = raw_s16(ref_raw)[: len(payloads) * 160]
    assert np.array_equal(got[: len(ref)], ref)


@pytest.mark.parametrize("rate,channels", [(8000, 1), (16000, 2), (44100, 1), (48000, 2)])
def test_l16_is_bit_exact(rate: int, channels: int, speech: Path, tmp_path: Path) -> None:
    enc = tmp_path / "enc.raw"
    ff("-i", str(speech), "-ac", str(channels), "-ar", str(rate), "-f", "s16be", str(enc))
    per = rate // 50 * 2 * channels
    payloads = split(enc.read_bytes(), per)
    got, got_rate = record(tmp_path, "L16", rate, 96, payloads, [rate // 50] * len(payloads),
                           channels=channels)
    pcm = np.frombuffer(b"".join(payloads), dtype=">i2").astype(np.int32)
    ref = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16) if channels > 1 else pcm
    assert got_rate == rate and np.array_equal(got[: len(ref)], ref.astype(np.int16))


def _lib(name: str) -> ctypes.CDLL:
    for candidate in (name, ctypes.util.find_library(name.split(".so")[0].removeprefix("lib"))):
        if candidate:
            try:
                return ctypes.CDLL(candidate)
            except OSError:
                continue
    pytest.skip(f"reference library {name} is not installed")


def mono(speech: Path, tmp: Path, rate: int) -> np.ndarray:
    out = tmp / f"mono{rate}.raw"
    ff("-i", str(speech), "-ac", "1", "-ar", str(rate), "-f", "s16le", str(out))
    return raw_s16(out)


@pytest.mark.parametrize("octet", [True, False], ids=["octet-aligned", "bandwidth-efficient"])
@pytest.mark.parametrize("wideband", [False, True], ids=["AMR", "AMR-WB"])
def test_amr(wideband: bool, octet: bool, speech: Path, tmp_path: Path) -> None:
    from writer.amr import rtp_payload

    rate = 16000 if wideband else 8000
    pcm = mono(speech, tmp_path, rate)
    n = rate // 50
    out = (ctypes.c_ubyte * 64)()
    frames: list[bytes] = []
    if wideband:  # VisualOn AMR-WB encoder (libvo-amrwbenc), mode 8 = 23.85 kbit/s
        lib = _lib("libvo-amrwbenc.so.0")
        lib.E_IF_init.restype = ctypes.c_void_p
        state = ctypes.c_void_p(lib.E_IF_init())
        for k in range(len(pcm) // n):
            buf = np.ascontiguousarray(pcm[k * n: (k + 1) * n])
            size = lib.E_IF_encode(state, 8, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_short)),
                                   out, 0)
            frames.append(bytes(out[:size]))
        lib.E_IF_exit(state)
        magic = b"#!AMR-WB\n"
    else:  # 3GPP reference AMR-NB encoder (opencore-amrnb), mode 7 = 12.2 kbit/s
        lib = _lib("libopencore-amrnb.so.0")
        lib.Encoder_Interface_init.restype = ctypes.c_void_p
        state = ctypes.c_void_p(lib.Encoder_Interface_init(0))
        for k in range(len(pcm) // n):
            buf = np.ascontiguousarray(pcm[k * n: (k + 1) * n])
            size = lib.Encoder_Interface_Encode(
                state, 7, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_short)), out, 0)
            frames.append(bytes(out[:size]))
        lib.Encoder_Interface_exit(state)
        magic = b"#!AMR\n"
    storage = tmp_path / "ref.amr"
    storage.write_bytes(magic + b"".join(frames))
    ref_raw = tmp_path / "ref.raw"
    ff("-i", str(storage), "-f", "s16le", "-ac", "1", str(ref_raw))
    payloads = [rtp_payload([((f[0] >> 3) & 0x0F, f[1:])], wideband, octet) for f in frames]
    fmtp = "octet-align=1" if octet else ""
    name = "AMR-WB" if wideband else "AMR"
    got, got_rate = record(tmp_path, name, rate, 100, payloads, [n] * len(payloads), fmtp)
    assert got_rate == rate
    snr = fast_snr_db(got, raw_s16(ref_raw))
    print(f"{name} {'octet' if octet else 'be'}: SNR {snr:.1f} dB")
    assert snr >= 30.0


@pytest.mark.parametrize("vad", [False, True], ids=["G729A", "G729B-with-VAD"])
def test_g729(vad: bool, speech: Path, tmp_path: Path) -> None:
    lib = _lib("libbcg729.so.0")  # Belledonne's G.729A/B reference-compatible encoder
    lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
    enc = ctypes.c_void_p(lib.initBcg729EncoderChannel(ctypes.c_uint8(1 if vad else 0)))
    pcm = mono(speech, tmp_path, 8000)
    pcm = np.concatenate([pcm, np.zeros(8000, np.int16)])  # trailing silence for SID frames
    out = (ctypes.c_uint8 * 10)()
    length = ctypes.c_uint8()
    frames = []
    for k in range(len(pcm) // 80):
        buf = np.ascontiguousarray(pcm[k * 80: (k + 1) * 80])
        lib.bcg729Encoder(enc, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), out,
                          ctypes.byref(length))
        frames.append(bytes(out[: length.value]))
    lib.closeBcg729EncoderChannel(enc)
    # up to two 10 ms frames per packet; a SID frame (2 bytes) ends its packet (RFC 3551
    # section 4.5.6) and untransmitted frames (VAD) leave a gap in the timestamps
    payloads: list[bytes] = []
    steps: list[int] = []
    body = b""
    for f in frames:
        if f:
            body += f
        if body and (len(body) >= 20 or len(f) == 2 or not f):
            payloads.append(body)
            steps.append(80 * (len(body) // 10 + (len(body) % 10 == 2)))
            body = b""
        if not f and steps:
            steps[-1] += 80
    if body:
        payloads.append(body)
        steps.append(80 * (len(body) // 10))
    if vad:
        assert any(len(p) % 10 == 2 for p in payloads), "expected SID frames"
    got, got_rate = record(tmp_path, "G729", 8000, 18, payloads, steps,
                           "" if vad else "annexb=no")
    assert got_rate == 8000
    # reference: FFmpeg's G.729 decoder fed the speech frames directly (SID frames are 10 ms
    # of comfort noise, silence in both)
    import av

    ctx = av.CodecContext.create("g729", "r")
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    ctx.open()
    ref = []
    for f in frames:
        if len(f) == 10:
            ref.extend(fr.to_ndarray().reshape(-1) for fr in ctx.decode(av.Packet(f)))
        else:
            ref.append(np.zeros(80, np.int16))
    reference = np.concatenate(ref).astype(np.int16)
    speech_part = slice(0, len(reference) - 8000)
    snr = fast_snr_db(got[: len(reference)][speech_part], reference[speech_part])
    print(f"G729 vad={vad}: SNR {snr:.1f} dB")
    assert snr >= 30.0


def test_lpc10_from_spandsp(speech: Path, tmp_path: Path) -> None:
    """LPC-10 (FS-1015) from spandsp's encoder, four 7-byte frames per 90 ms packet as
    FreeSWITCH sends PT 7; the recording equals a direct decode of the same frames."""
    lib = _lib("libspandsp.so.2")
    lib.lpc10_encode_init.restype = ctypes.c_void_p
    lib.lpc10_encode_init.argtypes = [ctypes.c_void_p]
    lib.lpc10_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.POINTER(ctypes.c_int16), ctypes.c_int]
    enc = ctypes.c_void_p(lib.lpc10_encode_init(None))
    pcm = mono(speech, tmp_path, 8000)
    pcm = np.ascontiguousarray(pcm[: len(pcm) // 720 * 720])
    out = ctypes.create_string_buffer(28)
    payloads = []
    for k in range(len(pcm) // 720):
        block = np.ascontiguousarray(pcm[k * 720: (k + 1) * 720])
        n = lib.lpc10_encode(enc, out, block.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)),
                             720)
        payloads.append(out.raw[:n])
    assert {len(p) for p in payloads} == {28}
    got, got_rate = record(tmp_path, "LPC", 8000, 7, payloads, [720] * len(payloads))
    from writer.lpc10 import Lpc10Decoder

    dec = Lpc10Decoder()
    reference = np.concatenate([dec.decode(p) for p in payloads])
    assert got_rate == 8000 and np.array_equal(got[: len(reference)], reference)
    assert float(np.sqrt(np.mean(reference.astype(np.float64) ** 2))) > 300  # speech


def test_dvi4_from_ffmpeg_ima_adpcm(speech: Path, tmp_path: Path) -> None:
    """IMA ADPCM from ffmpeg's WAV encoder, repacked as RFC 3551 DVI4: the block header
    sample becomes the packet's predictor, nibbles swap to high-first. FFmpeg expands a
    nibble with the exact product ((2d + 1) * step) >> 3, DVI4's reference with shifts and
    adds, so the two differ by a few units: compared by SNR, not bit for bit."""
    wav = tmp_path / "ima.wav"
    ff("-i", str(speech), "-ac", "1", "-ar", "8000", "-c:a", "adpcm_ima_wav",
       "-block_size", "128", str(wav))
    ref_raw = tmp_path / "ref.raw"
    ff("-i", str(wav), "-f", "s16le", str(ref_raw))
    data = wav.read_bytes()
    body = data[data.index(b"data") + 8:]
    blocks = split(body, 128)
    payloads = []
    for b in blocks:
        pred = int.from_bytes(b[0:2], "little", signed=True)
        swapped = bytes(((x & 0x0F) << 4) | (x >> 4) for x in b[4:])
        payloads.append(pred.to_bytes(2, "big", signed=True) + bytes([b[2], 0]) + swapped)
    got, _ = record(tmp_path, "DVI4", 8000, 5, payloads, [248] * len(payloads))
    ref = raw_s16(ref_raw)[: len(blocks) * 249].reshape(-1, 249)[:, 1:].reshape(-1)
    # (the block's header sample is the DVI4 predictor, not an output sample)
    snr = fast_snr_db(got[: len(ref)], ref)
    print(f"DVI4: SNR {snr:.1f} dB")
    assert snr >= 30.0
