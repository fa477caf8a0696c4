"""What the writer is told beyond the call itself (from the configuration)."""

from __future__ import annotations

from dataclasses import dataclass, field

from writer.jitterbuf import JitterBuffer
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
    jitter_buffer_mode: str = "fixed"
    """The listener's modelled jitter buffer: fixed or adaptive."""
    jitter_buffer_ms: float = 60.0
    """Its depth (fixed) or starting depth (adaptive)."""
    jitter_buffer_max_ms: float = 200.0
    """The deepest an adaptive buffer grows."""
    retry: bool = False
    """The call may have been begun by a writer that died: its temporary files are
    removed first (a live writer's claimed job)."""
    relay_hop: str = "nearest-sender"
    """Which copy of a relayed stream is recorded: nearest-sender (what the talker's phone
    sent, before the relay) or nearest-receiver (what reached the listener)."""
    pci_dtmf: bool = False
    """Silence DTMF in the audio (in-band tones, RFC 4733 event periods) and keep only the
    digits' times (PCI DSS)."""
    signing_key: str = ""
    """Ed25519 private key (PEM file): each call gets a signed manifest and a line in the
    append-only log. Empty: neither."""
    recorder_name: str = ""
    """The recorder's name in manifests (the host name by default)."""
    encrypt_to: str = ""
    """X25519 public key (PEM file): the call's files are sealed (writer.seal) with a data
    key wrapped for it. Empty: plain files."""
    key_store: str = ""
    """The key store's directory (empty: OUT/.calltap/keys)."""
    tsa_url: str = ""
    """An RFC 3161 authority that timestamps each signed checkpoint (empty: none)."""
    durable: bool = True
    """fsync every file of a call and its directory before the call counts as written (live
    writers: a job is acknowledged only then). Import writes without it and syncs the
    file system once at the end."""

    def jitter_buffer(self) -> JitterBuffer:
        """A fresh model for one stream."""
        return JitterBuffer(self.jitter_buffer_mode, self.jitter_buffer_ms,
                            min(20.0, self.jitter_buffer_ms), self.jitter_buffer_max_ms)
