"""Same recordings before and after a change of the core: imports each capture with the
import core as it stood at a git revision (default: the tag ``import-v1``, the core before
the Recorder rewrite) and with the working tree, and reports every difference.

Audio must be sample-identical; summaries and index lines equal except the fields listed in
KNOWN_FIXES (wrong before; each says why). Inputs: the generated mirror variants, every
shared capture (when ../shared is present) and, with --bench, the 200 x 60 s benchmark
capture.

    .venv/bin/python bench/compare_import.py [--rev import-v1] [--bench] [--only NAME...]

Exits 1 when any capture differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_PCAPS = ROOT.parent / "shared" / "pcaps"

# The core before the Recorder rewrite: the tag, or its commit where tags were not fetched.
DEFAULT_REV, DEFAULT_COMMIT = "import-v1", "96211ac"
# Summary fields (paths with "*" for any list index or key) the old core got wrong, with why;
# they are left out of the comparison.
KNOWN_FIXES: dict[str, str] = {}
# Fields the old core did not write at all, with what they are; left out likewise.
ADDED_FIELDS: dict[str, str] = {
    "index.view": "the dashboard's view file (peaks, marks, quality per second, ladder)",
    "index.sip_pcap": "the call's SIP messages as a pcap",
    "index.legs": "the B2BUA legs a recording joins",
    "index.related": "the other legs of a conversation written apart (join_legs = false)",
}
# Captures whose audio differs between two runs of the same core: only their summaries are
# compared.
NONDETERMINISTIC_AUDIO = {
    "sip-rtp-opus-hybrid.pcap": "FFmpeg's Opus decoder gives a few hundred different samples "
                                "from run to run on this hybrid-mode (SILK+CELT) stream",
}

# Runs the command line of whichever calltap is first on sys.path (the old tree's through
# PYTHONPATH, or this one's).
RUN = "import sys; from calltap.cli import main; sys.exit(main(sys.argv[1:]))"


def old_tree(rev: str, work: Path) -> Path:
    """The calltap packages at ``rev``, extracted under ``work``."""
    dest = work / f"tree-{rev}"
    if dest.exists():
        return dest
    dest.mkdir(parents=True)
    known = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "-q", "--verify",
                            f"{rev}^{{commit}}"], capture_output=True, check=False)
    if known.returncode != 0 and rev == DEFAULT_REV:
        rev = DEFAULT_COMMIT  # a clone without tags
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev,
                          "calltap", "capture", "correlate", "writer"],
                         capture_output=True, check=False)
    if tar.returncode != 0:
        sys.exit(f"compare_import: git archive {rev}: {tar.stderr.decode().strip()}")
    import io

    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        t.extractall(dest, filter="data")
    return dest


def run_import(pcap: Path, out: Path, tree: Path | None, extra: list[str]) -> str:
    """Import ``pcap`` into ``out`` with the old ``tree`` (or the working tree): stderr."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    r = subprocess.run([sys.executable, "-c", RUN, "import", str(pcap), "--out", str(out),
                        "--no-progress", *extra], capture_output=True, text=True,
                       env=env, cwd=out.parent, check=False)
    if r.returncode not in (0, 1):  # 1: some call or file reported an error, still compared
        sys.exit(f"compare_import: import of {pcap} failed ({r.returncode}): {r.stderr[-800:]}")
    return r.stderr


def _walk(a: Any, b: Any, path: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _walk(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _walk(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"


def _known(diff: str) -> bool:
    field = diff.split(":", 1)[0]
    generic = "".join("[*]" if part.endswith("]") and part.startswith("[") else part
                      for part in _split(field))
    return any(generic == k or generic.startswith(k + ".") or generic.startswith(k + "[")
               for k in (*KNOWN_FIXES, *ADDED_FIELDS))


def _split(field: str) -> list[str]:
    parts: list[str] = []
    cur = ""
    for ch in field:
        if ch == "[":
            parts.append(cur)
            cur = "["
        elif ch == "]":
            parts.append(cur + "]")
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def _frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def _audio_same(a: Path, b: Path) -> str | None:
    if a.suffix == ".wav":
        fa, fb = _frames(a), _frames(b)
        if fa == fb:
            return None
        n = min(len(fa), len(fb)) // 2
        import numpy as np

        x = np.frombuffer(fa[: 2 * n], np.int16)
        y = np.frombuffer(fb[: 2 * n], np.int16)
        bad = np.flatnonzero(x != y)
        first = f", first differing sample {int(bad[0])}" if len(bad) else ""
        return (f"audio differs: {len(fa) // 2} vs {len(fb) // 2} samples, "
                f"{len(bad)} differ{first}")
    return None if a.read_bytes() == b.read_bytes() else "audio bytes differ"


def compare(old: Path, new: Path, audio: bool = True) -> list[str]:
    """Every difference between two output directories (empty: the same recordings)."""
    def index(d: Path) -> dict[tuple[str, str], dict[str, Any]]:
        p = d / "index.jsonl"
        lines = p.read_text().splitlines() if p.exists() else []
        return {(e["call_id"], e["start"]): e for e in map(json.loads, lines)}

    ia, ib = index(old), index(new)
    out = [f"call {k[0]!r} only in the old import" for k in ia.keys() - ib.keys()]
    out += [f"call {k[0]!r} only in the new import" for k in ib.keys() - ia.keys()]
    for key in sorted(ia.keys() & ib.keys()):
        ea, eb = ia[key], ib[key]
        where = f"call {key[0][:40]!r}"
        out += [f"{where}: index{d}" for d in _walk(ea, eb, "") if not _known("index" + d)]
        sa = json.loads((old / ea["summary"]).read_text())
        sb = json.loads((new / eb["summary"]).read_text())
        out += [f"{where}: summary{d}" for d in _walk(sa, sb, "") if not _known(d[1:])]
        for fa, fb in zip(ea.get("audio_files") or [] if audio else [],
                          eb.get("audio_files") or [], strict=False):
            why = _audio_same(old / fa, new / fb)
            if why:
                out.append(f"{where}: {fa}: {why}")
    return out


def inputs(work: Path, bench: bool, only: list[str]) -> list[Path]:
    """The captures to compare: generated mirror variants, the shared corpus, the bench."""
    calltap = [sys.executable, "-c", RUN]
    found: list[Path] = []
    gen = work / "generated"
    gen.mkdir(exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from calltap.mirror import VARIANTS

    # the relayed and B2BUA variants are left out: the old core mixed the two hops of each
    # stream (segments of one packet each) and wrote each leg apart, which is what the hop
    # choice and the leg joining fixed
    for variant in ("", *(v for v in VARIANTS if not v.startswith(("relay", "b2bua")))):
        p = gen / f"mirror-{variant or 'plain'}.pcap"
        if not p.exists():
            extra = ["--mirror", variant] if variant else []
            subprocess.run([*calltap, "generate", str(p), "--calls", "3", "--duration", "4",
                            "--loss", "0.02", "--jitter-ms", "6", "--rtcp", "--seed", "11",
                            *extra], check=True, cwd=work)
        found.append(p)
    if SHARED_PCAPS.is_dir():
        found += sorted(p for p in SHARED_PCAPS.iterdir()
                        if p.suffix in (".pcap", ".pcapng", ".cap"))
    if bench:
        p = work / "bench-200x60.pcap"
        if not p.exists():
            subprocess.run([*calltap, "generate", str(p), "--calls", "200", "--duration", "60",
                            "--loss", "0.005", "--jitter-ms", "4", "--seed", "5"], check=True)
        found.append(p)
    if only:
        found = [p for p in found if p.name in only]
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default=DEFAULT_REV, help="git revision of the old core")
    ap.add_argument("--bench", action="store_true", help="also the 200 x 60 s capture")
    ap.add_argument("--only", nargs="*", default=[], help="capture file names to compare")
    ap.add_argument("--work", help="directory to keep generated captures and outputs in")
    ap.add_argument("--jobs", default="", help="--jobs for both imports")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="calltap-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    tree = old_tree(args.rev, work)
    extra = ["--jobs", args.jobs] if args.jobs else []
    failed = 0
    for pcap in inputs(work, args.bench, args.only):
        a, b = work / "old" / pcap.stem, work / "new" / pcap.stem
        for d in (a, b):
            if d.exists():
                import shutil

                shutil.rmtree(d)
            d.mkdir(parents=True)
        run_import(pcap, a, tree, extra)
        run_import(pcap, b, None, extra)
        diffs = compare(a, b, audio=pcap.name not in NONDETERMINISTIC_AUDIO)
        calls = len((a / "index.jsonl").read_text().splitlines()) \
            if (a / "index.jsonl").exists() else 0
        status = "same" if not diffs else f"{len(diffs)} difference(s)"
        print(f"{pcap.name:55} {calls:5} calls  {status}")
        for line in diffs[:20]:
            print(f"    {line}")
        failed += bool(diffs)
    print(f"{failed} capture(s) differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
