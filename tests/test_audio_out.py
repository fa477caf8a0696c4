from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers import read_wav
from writer.audio_out import AudioOut
from writer.output import tmp_name


def frames(n: int = 8000) -> np.ndarray:
    t = np.arange(n) / 8000
    left = np.round(6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    right = np.round(6000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
    return np.stack([left, right], axis=1)


def decode(path: str) -> tuple[np.ndarray, int, int]:
    with av.open(path) as box:
        stream = box.streams.audio[0]
        chunks = [f.to_ndarray() for f in box.decode(stream)]
        return np.concatenate(chunks, axis=1), stream.rate, stream.channels


@pytest.mark.parametrize("fmt", ["wav", "flac", "opus", "mp3"])
@pytest.mark.parametrize("layout", ["stereo", "mono", "split"])
def test_formats_and_layouts(fmt: str, layout: str, tmp_path: Path) -> None:
    out = AudioOut(str(tmp_path / "call"), fmt, layout, 8000)
    data = frames()
    for i in range(0, len(data), 1000):  # streamed in pieces
        out.write(data[i: i + 1000])
    paths = out.close()
    assert len(paths) == (2 if layout == "split" else 1)
    assert not any(Path(tmp_name(p)).exists() for p in paths)
    for k, path in enumerate(paths):
        pcm, rate, channels = decode(path)
        assert channels == (2 if layout == "stereo" else 1)
        per_channel = pcm.shape[1] // channels if pcm.shape[0] == 1 else pcm.shape[1]
        seconds = per_channel / rate
        assert 0.95 < seconds < 1.2, seconds
        if fmt in ("wav", "flac"):
            got = pcm.reshape(-1, channels) if pcm.shape[0] == 1 else pcm.T
            expect = {"stereo": data, "mono": ((data[:, 0].astype(np.int32) + data[:, 1]) // 2)
                      .astype(np.int16)[:, None], "split": data[:, k: k + 1]}[layout]
            assert np.array_equal(got.astype(np.int16), expect)


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    out = AudioOut(str(tmp_path / "c"), "flac", "split", 16000)
    out.write(frames())
    out.abort()
    assert list(tmp_path.iterdir()) == []


def test_bad_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AudioOut(str(tmp_path / "c"), "aiff", "stereo", 8000)
    with pytest.raises(ValueError):
        AudioOut(str(tmp_path / "c"), "wav", "quad", 8000)


def test_wav_reader_agrees(tmp_path: Path) -> None:
    out = AudioOut(str(tmp_path / "c"), "wav", "stereo", 8000)
    out.write(frames())
    (path,) = out.close()
    audio, rate = read_wav(Path(path))
    assert rate == 8000 and np.array_equal(audio, frames())


@pytest.mark.parametrize("limit", [None, 1000])
def test_wav_past_the_riff_limit_becomes_rf64(limit: int | None, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A WAV that outgrows RIFF's 32-bit sizes is finished as RF64 (EBU Tech 3306), read
    back by libsndfile sample for sample; a shorter one stays plain RIFF/WAVE."""
    import soundfile

    from writer import audio_out

    if limit is not None:  # a real 4 GiB file is too big for the suite: lower the limit
        monkeypatch.setattr(audio_out, "RIFF_MAX", limit)
    x = frames(4000)
    out = AudioOut(str(tmp_path / "long"), "wav", "stereo", 8000)
    out.write(x[:1234])
    out.write(x[1234:])
    (path,) = out.close()
    head = Path(path).read_bytes()[:16]
    assert head[:4] == (b"RIFF" if limit is None else b"RF64") and head[8:16] in (
        b"WAVEJUNK", b"WAVEds64")
    got, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and np.array_equal(got, x)
    if limit is None:
        assert np.array_equal(read_wav(path)[0], x)
