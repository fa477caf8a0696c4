"""Listening to a call in progress: its spool so far, rendered by the writer's own path
(channels, clock mappings, decoding, placement, pause masking) every half second, and the
frames new since the last render sent on as one endless WAV stream, starting about two
seconds behind the newest packet."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from correlate.call import Call
from writer.columns import MediaColumns, spool_columns
from writer.job import lay_out, place
from writer.options import WriteOptions
from writer.pause import PauseMask
from writer.pci import DtmfMask, event_spans
from writer.timeline import StereoWindow

NS = 1_000_000_000
# How far behind the newest rendered frame a listener starts: the browser's buffer.
LEAD_S = 1.5
# Frames this close to the newest packet wait for the next render: a packet the network
# reordered may still land there.
HOLD_S = 0.3
# A render looks at this much of the call's newest media at most (a long call costs no
# more per render than this); a listener hears from at most this far back.
WINDOW_S = 60
# Renders wait this long between them.
RENDER_EVERY_S = 0.5


def wav_header(rate: int) -> bytes:
    """A stereo 16-bit WAV header for a stream of unknown length (sizes at their maximum,
    as streaming players expect)."""
    fmt = struct.pack("<HHIIHH", 1, 2, rate, rate * 4, 4, 16)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF))


def _recent(media: MediaColumns, seconds: int) -> MediaColumns:
    if not len(media):
        return media
    keep = media.ts >= int(media.ts.max()) - seconds * NS
    if keep.all():
        return media
    return MediaColumns(media.ts[keep], media.flow[keep], media.off[keep],
                        media.length[keep], media.data)


def render_so_far(call: Call, spool: str, options: WriteOptions, key: bytes | None = None
                  ) -> tuple[int, int, npt.NDArray[np.int16]]:
    """(rate, capture time of the first frame, stereo frames) of the call's recent media,
    as the writer would place them; (0, 0, empty) before any decodable media."""
    if not os.path.exists(spool):  # no media spooled yet (the call is being set up)
        return 0, 0, np.zeros((0, 2), np.int16)
    media = _recent(spool_columns(spool, key), WINDOW_S)
    lay = lay_out(call, media, options)
    rate = lay.plan.rate
    if not rate:
        return 0, 0, np.zeros((0, 2), np.int16)
    blocks: list[npt.NDArray[np.int16]] = []
    sink: Callable[[npt.NDArray[np.int16]], None] = blocks.append
    if call.pauses:
        sink = PauseMask(call.pauses, lay.audio_start_ns, rate, blocks.append)
    mask = None
    if options.pci_dtmf:  # a card number keyed live is not heard live either
        mask = DtmfMask(rate, lay.audio_start_ns, sink,
                        lambda: event_spans([d.events for d in lay.dirs]))
        sink = mask
    window = StereoWindow(rate, sink)
    place(call, media, lay, options, window)
    window.close()
    if mask is not None:
        mask.finish()
    pcm = np.concatenate(blocks) if blocks else np.zeros((0, 2), np.int16)
    return rate, lay.audio_start_ns, pcm.astype(np.int16, copy=False)


class LiveListener:
    """One listener's position in a call: feed it each render, it returns the bytes to send
    (the WAV header first)."""

    def __init__(self) -> None:
        self.rate = 0
        self.next_ns = 0
        """Capture time of the next frame to send (0: nothing sent yet)."""
        self.first_ns = 0
        """Capture time of the first frame sent."""

    def take(self, rate: int, start_ns: int, pcm: npt.NDArray[np.int16],
             final: bool = False) -> bytes:
        if not rate or not len(pcm) or (self.rate and rate != self.rate):
            return b""
        usable = len(pcm) if final else len(pcm) - int(HOLD_S * rate)
        if usable <= 0:
            return b""
        out = b""
        if not self.rate:
            self.rate = rate
            first = max(0, usable - int(LEAD_S * rate))
            self.first_ns = self.next_ns = start_ns + first * NS // rate
            out = wav_header(rate)
        pos = (self.next_ns - start_ns) * rate // NS
        if pos < 0:  # the render window moved past frames never sent: skip ahead
            pos = 0
        if pos >= usable:
            return out
        out += np.ascontiguousarray(pcm[pos:usable]).tobytes()
        self.next_ns = start_ns + usable * NS // rate
        return out
