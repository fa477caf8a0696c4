"""Audio output: the two channels of a call streamed into WAV, FLAC, Ogg/Opus or MP3, as
one stereo file, one mono mix, or one file per party. Files are written under temporary
names; ``close`` renames them, ``abort`` removes them."""

from __future__ import annotations

import os
import struct
from typing import Any, BinaryIO

import numpy as np

from writer.keystore import Sealer
from writer.output import start_writeback, sync_path, tmp_name
from writer.resample import Resampler
from writer.seal import SUFFIX, SealedWriter
from writer.timeline import Int16Array

# format -> (file extension, container, encoder)
FORMATS = {
    "wav": ("wav", "", ""),
    "flac": ("flac", "flac", "flac"),
    "opus": ("opus", "ogg", "libopus"),
    "mp3": ("mp3", "mp3", "libmp3lame"),
}
LAYOUTS = ("stereo", "mono", "split")
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_BITRATE = {1: 48_000, 2: 96_000}  # speech: plenty at any of these sample rates
# Formats written through libsndfile (soundfile): (major format, subtype). FLAC measured
# 2.3x faster than PyAV's encoder; Opus stays on PyAV's libopus, since libsndfile's Ogg
# Opus measured 2.8x slower on 8 kHz stereo speech; WAV is written here (RF64 when needed).
SNDFILE = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
# WAVE_FORMAT_PCM's fmt chunk; the ds64 chunk RF64 puts where WAV's JUNK chunk stood.
WAV_FMT = struct.Struct("<HHIIHH")
DS64 = struct.Struct("<QQQI")
DS64_SIZE = DS64.size
# RIFF's sizes are 32 bits: past this a WAV is finished as RF64.
RIFF_MAX = 0xFFFFFFFF


class _Wav:
    """16-bit PCM WAV written block by block. The header reserves a JUNK chunk the size of
    an RF64 ds64 chunk (EBU Tech 3306): a recording that passes RIFF's 4 GiB limit (about
    37 hours of 8 kHz stereo) is finished as RF64 in place instead of failing; any shorter
    one stays a plain RIFF/WAVE file every reader knows."""

    def __init__(self, path: str, rate: int, channels: int, sealer: Sealer | None) -> None:
        self._f: BinaryIO | SealedWriter = (sealer.writer(path) if sealer
                                            else open(path, "wb"))  # noqa: SIM115
        self._frame = 2 * channels
        self._frames = 0
        fmt = WAV_FMT.pack(1, channels, rate, rate * self._frame, self._frame, 16)
        self._f.write(b"RIFF\0\0\0\0WAVEJUNK" + DS64_SIZE.to_bytes(4, "little")
                      + bytes(DS64_SIZE) + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
                      + b"data\0\0\0\0")
        self._data_at = self._f.tell()

    def write(self, frames: Int16Array) -> None:
        self._f.write(frames.astype("<i2", copy=False).tobytes())
        self._frames += len(frames)

    def close(self) -> None:
        f = self._f
        size = self._frames * self._frame
        if size % 2:
            f.write(b"\0")  # chunks are word-aligned (RIFF)
        riff = self._data_at - 8 + size + size % 2
        if riff <= RIFF_MAX:
            f.seek(4)
            f.write(riff.to_bytes(4, "little"))
            f.seek(self._data_at - 4)
            f.write(size.to_bytes(4, "little"))
        else:
            f.seek(0)
            f.write(b"RF64\xff\xff\xff\xffWAVEds64" + DS64_SIZE.to_bytes(4, "little")
                    + DS64.pack(riff, size, self._frames, 0))
            f.seek(self._data_at - 4)
            f.write(b"\xff\xff\xff\xff")
        f.close()


class _Sndfile:
    """FLAC or MP3 through libsndfile (soundfile), written block by block."""

    def __init__(self, path: str, fmt: str, rate: int, channels: int,
                 sealer: Sealer | None) -> None:
        import soundfile

        major, subtype = SNDFILE[fmt]
        self._sealed = sealer.writer(path) if sealer else None
        self._f = soundfile.SoundFile(self._sealed or path, "w", samplerate=rate,
                                      channels=channels, format=major, subtype=subtype)

    def write(self, frames: Int16Array) -> None:
        self._f.write(frames)

    def close(self) -> None:
        self._f.close()
        if self._sealed is not None:
            self._sealed.close()


class _Encoded:
    """A PyAV container with one audio stream; frames are buffered to the encoder's size."""

    def __init__(self, path: str, fmt: str, rate: int, channels: int,
                 sealer: Sealer | None) -> None:
        import av

        _ext, container, codec = FORMATS[fmt]
        self._av = av
        self._resamplers: list[Resampler] = []
        if codec == "libopus" and rate not in OPUS_RATES:
            self._resamplers = [Resampler(rate, 48000) for _ in range(channels)]
            rate = 48000
        self.rate = rate
        self.channels = channels
        self._sealed = sealer.writer(path) if sealer else None
        box: Any = av.open(self._sealed or path, "w", format=container)
        stream: Any = box.add_stream(codec, rate=rate)
        self._box, self._stream = box, stream
        self._stream.layout = "stereo" if channels == 2 else "mono"
        if codec == "libmp3lame":
            self._stream.bit_rate = MP3_BITRATE[channels]
        self._fifo: Any = av.AudioFifo()
        self._pts = 0
        self._planar = codec == "libmp3lame"

    def _frame(self, data: Int16Array) -> Any:
        layout = "stereo" if self.channels == 2 else "mono"
        if self._planar:
            frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="s16p",
                                                     layout=layout)
        else:
            frame = self._av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16",
                                                     layout=layout)
        frame.sample_rate = self.rate
        return frame

    def write(self, frames: Int16Array) -> None:
        if self._resamplers:
            frames = np.stack([rs.process(frames[:, c]) for c, rs in enumerate(self._resamplers)],
                              axis=1)
        if not len(frames):
            return
        frame = self._frame(np.ascontiguousarray(frames))
        frame.pts = None
        self._fifo.write(frame)
        size = self._stream.codec_context.frame_size or 1024
        while self._fifo.samples >= size:
            self._encode(self._fifo.read(size))

    def _encode(self, frame: Any) -> None:
        frame.pts = self._pts
        self._pts += frame.samples
        for packet in self._stream.encode(frame):
            self._box.mux(packet)

    def close(self) -> None:
        if self._fifo.samples:
            # FLAC, libopus and LAME all take a shorter last frame (SMALL_LAST_FRAME).
            self._encode(self._fifo.read(self._fifo.samples))
        for packet in self._stream.encode(None):
            self._box.mux(packet)
        self._box.close()
        if self._sealed is not None:
            self._sealed.close()


class AudioOut:
    """Writes a call's stereo frames (channel 0 caller, 1 callee) in a format and layout."""

    def __init__(self, base: str, fmt: str, layout: str, rate: int,
                 sealer: Sealer | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown audio format {fmt!r}; one of {', '.join(FORMATS)}")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
        ext = FORMATS[fmt][0]
        self.layout = layout
        if layout == "split":
            self.paths = [f"{base}-caller.{ext}", f"{base}-callee.{ext}"]
        else:
            self.paths = [f"{base}.{ext}"]
        if sealer is not None:  # sealed: the plain bytes never reach the disk
            self.paths = [p + SUFFIX for p in self.paths]
        channels = 2 if layout == "stereo" else 1
        self._files: list[_Wav | _Sndfile | _Encoded] = []
        try:
            for path in self.paths:
                tmp = tmp_name(path)
                self._files.append(
                    _Wav(tmp, rate, channels, sealer) if fmt == "wav"
                    else _Sndfile(tmp, fmt, rate, channels, sealer) if fmt in SNDFILE
                    else _Encoded(tmp, fmt, rate, channels, sealer))
        except BaseException:
            self.abort()
            raise

    def write(self, frames: Int16Array) -> None:
        if self.layout == "stereo":
            self._files[0].write(frames)
        elif self.layout == "mono":
            mix = (frames[:, 0].astype(np.int32) + frames[:, 1]) // 2
            self._files[0].write(mix.astype(np.int16)[:, None])
        else:
            self._files[0].write(np.ascontiguousarray(frames[:, :1]))
            self._files[1].write(np.ascontiguousarray(frames[:, 1:]))

    def close(self, durable: bool = True) -> list[str]:
        """Finish and rename every file (on disk first with ``durable``); returns their
        final paths."""
        for f in self._files:
            f.close()
        for path in self.paths:
            if durable:
                sync_path(tmp_name(path))
        for path in self.paths:
            os.replace(tmp_name(path), path)
            if not durable:
                start_writeback(path)
        return self.paths

    def abort(self) -> None:
        for path in self.paths:
            if os.path.exists(tmp_name(path)):
                os.unlink(tmp_name(path))
