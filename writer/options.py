"""What the writer is told beyond the call itself (from the configuration)."""

from __future__ import annotations

from dataclasses import dataclass, field

from writer.srtp import SrtpKey


@dataclass(frozen=True)
class WriteOptions:
    """Output choices for every call of a run."""

    audio_format: str = "wav"
    """wav, flac, opus (Ogg) or mp3."""
    layout: str = "stereo"
    """stereo (caller left, callee right), mono (a mix) or split (one file per party)."""
    comfort_noise: str = "silence"
    """How RFC 3389 comfort noise sounds in the recording: silence or noise."""
    srtp_keys: tuple[SrtpKey, ...] = field(default_factory=tuple)
    """User keys for SRTP streams without SDES keys."""
