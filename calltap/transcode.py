"""Recordings transcoded for a browser with FFmpeg: one file, or a split layout's two
files as the two channels of one."""

from __future__ import annotations

import subprocess

from fastapi import HTTPException

# An FFmpeg transcoding of one recording that takes longer has hung.
TIMEOUT_S = 600
# The file extension of each format a browser is given.
EXTENSIONS = {"mp3": "mp3", "opus": "ogg", "wav": "wav", "flac": "flac"}
CODECS = {"mp3": ["-c:a", "libmp3lame", "-q:a", "4"], "opus": ["-c:a", "libopus", "-b:a", "32k"],
          "wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"]}
# Two mono inputs (caller, callee) as the left and right channels.
MERGE = ["-filter_complex", "[0:a][1:a]amerge=inputs=2[a]", "-map", "[a]", "-ac", "2"]


def run(sources: list[str], fmt: str, target: str, pass_fds: tuple[int, ...] = ()) -> None:
    """``sources`` (paths; /dev/fd/N with ``pass_fds``) as one ``fmt`` file at ``target``;
    HTTP 500 with FFmpeg's words when it fails."""
    inputs = [x for src in sources for x in ("-i", src)]
    merge = MERGE if len(sources) == 2 else []
    r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, *merge,
                        *CODECS[fmt], "-f", EXTENSIONS[fmt], target], capture_output=True,
                       check=False, timeout=TIMEOUT_S, pass_fds=pass_fds)
    if r.returncode:
        raise HTTPException(500, "transcoding failed: "
                            + r.stderr.decode(errors="replace").strip()[:200])
