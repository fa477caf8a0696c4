"""Write one finished call: spool in, audio + RFC 7865 metadata + summary JSON + index line out.

Two passes over the call's spool: the first finds each segment's clock mapping (smallest
transit), the second decodes and places audio. Memory is the window plus per-SSRC
counters, whatever the call's length.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import numpy.typing as npt

from capture.pcapwrite import PcapWriter, udp6_frame, udp_frame
from correlate.call import SIDE_NAMES, Call, pack_sip, sip_entries
from correlate.record import CallRecord
from writer import manifest, translog
from writer.audio_out import AudioOut
from writer.codecs import EMPTY
from writer.columns import CaptureMedia, MediaColumns, SealedSpool, spool_columns
from writer.direction import Direction, losing_branches
from writer.flows import assign_channels
from writer.hops import OTHER_HOP, choose_hops
from writer.joined import first_packet_order, join_media, joined_call, merged_call
from writer.keystore import KeyStore, Sealer, store_dir
from writer.metadata import build_metadata
from writer.options import WriteOptions
from writer.output import (
    append_index,
    call_stem,
    json_line,
    remove_stale_parts,
    sync_file,
    sync_path,
    tmp_name,
    write_atomic,
)
from writer.pause import PauseMask
from writer.pci import DtmfMask, event_spans, redact_sip
from writer.peaks import Peaks
from writer.render import Plan, place_audio, plan, stream_stats
from writer.seal import SUFFIX, SealedWriter, SealError, key_id_of, load_public
from writer.summary import call_json, direction_json, dtmf_digits, integrity
from writer.timefmt import rfc3339
from writer.timeline import (
    MAX_GAP_SECONDS,
    StereoWindow,
    collapse_gaps,
)
from writer.view import build_view

VERSION = "0.1.0"
DEFAULTS = WriteOptions()
# Comfort noise fills at most this much of one silence (it must stay inside the window).
MAX_CN_SECONDS = 4
# Payloads sampled per direction of an unsignalled call to tell SRTP from plain RTP.
SNIFF_PACKETS = 64
SNIFF_MIN_BYTES = 4096
# Bits per byte above which a payload is taken for ciphertext: uniform bytes give 7.95+
# over 4 KiB; G.711 speech and noise stay below 7.6.
ENCRYPTED_ENTROPY = 7.85
# SSRCs tracked per direction; a sender changes SSRC a few times at most, hostile streams more.
MAX_SSRCS = 64
NS = 1_000_000_000


def _cap(ts_ns: int, origin: int, clock: int) -> int:
    return (ts_ns - origin) * clock // NS


class WriteResult(NamedTuple):
    """What writing a call gives back."""

    entry: dict[str, Any]
    """Its index line."""
    drops: dict[str, int]
    """Packets not used, by reason."""
    search: dict[str, Any]
    """What the catalog reads from its summary (``search_fields``): the catalog need not
    read the summary back."""


Media = str | SealedSpool | MediaColumns | CaptureMedia | None
"""A call's media: a spool file, columns, places in a capture file, or none."""


@dataclass
class Layout:
    """How a call's media becomes audio: its directions, the plan of its streams, and where
    the recording starts."""

    dirs: tuple[Direction, Direction]
    plan: Plan
    channels: list[int]
    assigned: list[int]
    gaps: int
    base: int
    audio_start_ns: int


def lay_out(call: Call, media: MediaColumns, options: WriteOptions) -> Layout:
    """Channels, streams and their clock mappings (the first pass over the media)."""
    assigned = assign_channels(call.flows, losing_branches(call))
    channels = choose_hops(call, assigned, media, options.relay_hop)
    keys = options.srtp_keys
    dirs = (Direction(call, 0, channels, keys), Direction(call, 1, channels, keys))
    pl = plan(call, media, dirs, channels, _sniff)
    rate = pl.rate
    for d in dirs:
        if d.sniff and d.histogram.sum() >= SNIFF_MIN_BYTES:
            p = d.histogram[d.histogram > 0] / d.histogram.sum()
            entropy = float(-(p * np.log2(p)).sum())
            if entropy > ENCRYPTED_ENTROPY and not any(d.encrypted(s.ssrc) for s in d.segments):
                d.looks_encrypted = d.secure = True
    for d in dirs:
        for seg in d.segments:
            seg.fit()
    gaps = collapse_gaps([s for d in dirs for s in d.segments], rate) if rate else 0
    starts = [s.start() * rate // s.clock - s.shift for d in dirs for s in d.segments]
    base = min(starts) if starts else 0
    audio_start_ns = pl.origin + base * NS // rate if rate else 0
    return Layout(dirs, pl, channels, assigned, gaps, base, audio_start_ns)


def place(call: Call, media: MediaColumns, lay: Layout, options: WriteOptions,
          window: StereoWindow | None) -> None:
    """Decode the media and place it in ``window`` (the second pass); statistics too."""
    if not len(media):
        return
    noise = np.random.default_rng(call.serial) if options.comfort_noise == "noise" else None
    dup, over = stream_stats(media, lay.plan, lay.dirs, options)
    place_audio(media, lay.plan, dup, over, lay.dirs, window, lay.base, noise,
                [(a, b or 1 << 62) for a, b in call.pauses])


def _sealer(out_dir: str, options: WriteOptions) -> Sealer | None:
    """A new data key for the call (stored wrapped before any file is sealed), or None."""
    if not options.encrypt_to:
        return None
    return Sealer.new(KeyStore(store_dir(out_dir, options.key_store)),
                      load_public(options.encrypt_to), options.durable)


def _key_of(path: str) -> str | None:
    try:
        return key_id_of(path).hex()
    except SealError:
        return None


def search_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """What the catalog reads from a summary (addresses, names, identities, headers), kept
    in the index line of a sealed call, whose summary it cannot read."""
    call = summary["call"]
    keep = ("caller_signalling", "callee_signalling", "media", "caller_name", "callee_name",
            "identities", "headers")
    return {"call": {k: call[k] for k in keep if k in call},
            "directions": [{"src": x.get("src"), "dst": x.get("dst")}
                           for x in summary["directions"]]}


def _manifest(out_dir: str, files: list[str], call: Call, stem: str,
              options: WriteOptions, sealer: Sealer | None) -> bytes:
    import socket

    recorder = {"name": options.recorder_name or socket.gethostname(), "software": "calltap",
                "version": VERSION}
    ids = {"call_id": call.call_id, "stem": stem, "caller": call.caller_uri,
           "callee": call.callee_uri, "start": rfc3339(call.start_ns)}
    return manifest.sign(manifest.build(out_dir, files, ids, recorder,
                                        rfc3339(int(time.time() * NS)),
                                        sealer.data_key if sealer else None),
                         options.signing_key)


def call_media(record: CallRecord, spool: Media | list[Media]) -> tuple[Call, MediaColumns]:
    """The call to write and its media: a B2BUA's legs (``record.legs``, each with its
    spool in ``spool``'s list) become one call of all of them."""
    call = record.call
    parts = list(spool) if isinstance(spool, list) else [spool]
    if not record.legs:
        return call, media_columns(parts[0])
    parts += [None] * (1 + len(record.legs) - len(parts))
    return (joined_call(call, record.legs),
            join_media([media_columns(p) for p in parts], _offsets([call, *record.legs])))


def _offsets(calls: list[Call]) -> list[int]:
    """Where each call's flows start when their flow lists are put end to end."""
    out, n = [], 0
    for c in calls:
        out.append(n)
        n += len(c.flows)
    return out


def write_call(record: CallRecord, spool: Media | list[Media], out_dir: str,
               options: WriteOptions = DEFAULTS,
               parts: Sequence[tuple[CallRecord, Media | list[Media]]] = ()) -> WriteResult:
    """Write the files of ``call`` under ``out_dir`` and append its index line.

    The record's policy choices (format, layout) override ``options``'. ``parts`` are
    other capture processes' or probes' views of the same call, each with its media: their
    media and SIP messages join the call's. Returns the index entry and the call's media
    packets not used, by reason."""
    call, media = call_media(record, spool)
    if parts:
        views = [call_media(r, m) for r, m in parts]
        calls = [call, *(c for c, _m in views)]
        media = join_media([media, *(m for _c, m in views)], _offsets(calls))
        call = merged_call(call, calls[1:])
        media = first_packet_order(call, media)
    if options.pci_dtmf and call.sip_log:  # INFO digits leave no trace in the SIP files
        call.sip_log = [pack_sip(t, s, sp, d, dp, redact_sip(raw))
                        for t, s, sp, d, dp, raw in sip_entries(call.sip_log)]
    if record.audio_format or record.layout or record.relay_hop:
        options = replace(options, audio_format=record.audio_format or options.audio_format,
                          layout=record.layout or options.layout,
                          relay_hop=record.relay_hop or options.relay_hop)
    lay = lay_out(call, media, options)
    dirs, pl, channels, assigned = lay.dirs, lay.plan, lay.channels, lay.assigned
    unassigned, origin, rate = pl.unassigned, pl.origin, pl.rate
    gaps, audio_start_ns = lay.gaps, lay.audio_start_ns
    # Media nobody can decode still gets a (silent) recording, a packet time per packet,
    # so the call shows it had media; the summary says why it is silent.
    silent_only = not rate and (any(d.unknown_packets for d in dirs) or call.video_span[1])
    if silent_only:
        rate, audio_start_ns = 8000, origin if origin >= 0 else call.video_span[0]

    rel, stem = call_stem(call.call_id, call.start_ns)
    target = os.path.join(out_dir, rel)
    if not os.path.isdir(target):  # one stat: most calls go where others already went
        os.makedirs(target, exist_ok=True)
    if options.retry:
        remove_stale_parts(target, stem)
    sealer = _sealer(out_dir, options)
    sfx = SUFFIX if sealer else ""
    # a sealed call written again (a re-import): the files it replaces had a key of their own
    superseded = _key_of(os.path.join(target, stem + ".json" + sfx)) if sealer else None

    def put(path: str, data: bytes) -> bool:
        return write_atomic(path + sfx, sealer.seal(data) if sealer else data,
                            options.durable)

    audio_files: list[str] = []
    peaks: Peaks | None = None
    window: StereoWindow | None = None
    mask: DtmfMask | None = None
    out: AudioOut | None = None
    try:
        if rate:
            out = AudioOut(os.path.join(target, stem), options.audio_format, options.layout,
                           rate, sealer)
            peaks = Peaks(rate, out.write)
            sink: Callable[[npt.NDArray[np.int16]], None] = peaks
            if call.pauses:
                sink = PauseMask(call.pauses, audio_start_ns, rate, peaks)
            if options.pci_dtmf:
                mask = DtmfMask(rate, audio_start_ns, sink,
                                lambda: event_spans([d.events for d in dirs]))
                sink = mask
            window = StereoWindow(rate, sink)
        place(call, media, lay, options, window)
        if window is not None and out is not None:
            if silent_only:
                for d in dirs:
                    window.put(d.channel, d.unknown_packets * 160, EMPTY)
                # only video or fax was seen: silence as long as it lasted (bounded)
                span = min(call.video_span[1] - call.video_span[0], MAX_GAP_SECONDS * NS)
                window.put(0, span * rate // NS, EMPTY)
            window.close()
            if mask is not None:
                mask.finish()
            audio_files = [os.path.relpath(p, out_dir).removesuffix(sfx)
                           for p in out.close(options.durable)]
    except BaseException:
        if out is not None:
            out.abort()
        raise
    audio_rel = audio_files[0] if audio_files else None

    for d in dirs:
        for st in d.stats.values():
            st.flush()
    directions = [direction_json(call, d, window, rate, channels) for d in dirs]
    if OTHER_HOP in channels:
        for x, hop in zip(directions, _other_hops(call, media, assigned, channels, options),
                          strict=True):
            x["relay"] = {"recorded_hop": options.relay_hop, "other_hops": hop}
    for d, x in zip(dirs, directions, strict=True):
        x["capture_integrity"] = integrity(call, d, directions[1 - d.channel])
    warnings: list[str] = []
    if gaps:
        warnings.append(f"the capture clock jumped {gaps} time(s) by more than "
                        f"{MAX_GAP_SECONDS} s; each jump is one second of silence")
    if silent_only and call.video_span[1] and not any(d.unknown_packets for d in dirs):
        warnings.append("only non-audio media (video, fax) was seen; the recording is silent")
    for d in dirs:
        who = f"channel {d.channel} ({SIDE_NAMES[d.channel]})"
        if d.srtp_no_key:
            what = ("packets whose payload looks encrypted (SRTP without signalling?)"
                    if d.looks_encrypted else "SRTP packets")
            warnings.append(f"{who}: {d.srtp_no_key} {what} and no key for them (give one "
                            "with --srtp-key); their audio is left silent")
        if d.srtp_auth_failed:
            warnings.append(f"{who}: {d.srtp_auth_failed} SRTP packets failed authentication "
                            "(wrong key?); their audio is left silent")
        for pt, name in sorted(d.unknown.items()):
            warnings.append(
                f"channel {d.channel} ({SIDE_NAMES[d.channel]}): payload type {pt} ({name}) "
                "has no decoder; its audio is left silent"
            )
    codecs = sorted({c for x in directions for c in x["codecs"]})
    zero = audio_start_ns if rate else max(origin, call.start_ns)
    # digits keyed while paused never got here: their packets kept no payload, and the
    # tracker does not keep SIP INFO digits of a paused call
    dtmf = dtmf_digits(call, dirs, zero)
    if options.pci_dtmf:  # the times stay, the digits go (PCI DSS)
        for x in dtmf:
            x["digit"] = "*"
    call_fields = call_json(call)
    parties = {side: [{"uri": u, "name": n} for u, n in record.parties[k]]
               for k, side in enumerate(SIDE_NAMES)}
    for side in SIDE_NAMES:
        if parties[side]:  # the policy's preferred identity names the party
            call_fields[side] = parties[side][0]["uri"]
            call_fields[f"{side}_name"] = parties[side][0]["name"]
    call_fields["identities"] = parties
    if call.headers.get("session-id"):
        call_fields["session_id"] = call.headers["session-id"][0]
    if record.legs:  # the other dialogs this recording joins (a B2BUA's B-leg)
        call_fields["legs"] = [leg_json(leg) for leg in record.legs]
    if record.related:
        call_fields["related"] = list(record.related)
    call_fields["headers"] = {h: list(v) for h, v in record.headers}
    decision = call.decision
    call_fields["policy"] = decision.to_json() if decision is not None else None
    end_ns = call.end_ns or call.last_ns
    call_fields["paused"] = [
        {"start": rfc3339(a), "end": rfc3339(b or end_ns),
         "offset": round((a - zero) / NS, 3), "seconds": round(((b or end_ns) - a) / NS, 3)}
        for a, b in call.pauses]
    summary: dict[str, Any] = {
        "call": call_fields,
        "audio": audio_rel,
        "audio_files": audio_files,
        "audio_format": options.audio_format if audio_files else None,
        "layout": options.layout if audio_files else None,
        "sample_rate": rate,
        "channels": {"0": "caller", "1": "callee"},
        "audio_start": rfc3339(audio_start_ns) if rate else None,
        "audio_start_ns": audio_start_ns if rate else None,
        "audio_frames": window.written if window else 0,
        "media_start_ns": max(origin, 0),
        "directions": directions,
        "dtmf": dtmf,
        "warnings": warnings,
        "unassigned_media_packets": unassigned,
        "recorder_version": VERSION,
        **({"pci_dtmf": {"silenced_seconds": round(mask.silenced / rate, 3) if mask else 0.0,
                         "digits_redacted": len(dtmf)}} if options.pci_dtmf else {}),
    }
    xml = build_metadata(summary)
    summary_path = os.path.join(target, stem + ".json")
    if decision is not None and decision.keep_pcap and len(media):
        summary["evidence_pcap"] = f"{rel}/{stem}.pcap"
        _evidence(call, media, os.path.join(target, stem + ".pcap"), options.durable, sealer)
        xml = build_metadata(summary)
    sip_rel = None
    if call.sip_log:
        sip_rel = f"{rel}/{stem}.sip.pcap"
        _sip_pcap(call, os.path.join(target, stem + ".sip.pcap"), options.durable, sealer)
    if len(media):
        ok = (pl.ch >= 0) & ~pl.rtcp & (pl.rtp.error == 0)  # each direction's well-formed RTP
        mine = (ok & (pl.ch == 0), ok & (pl.ch == 1))
        packets = ((media.ts[mine[0]], pl.rtp.seq[mine[0]], pl.rtp.ssrc[mine[0]]),
                   (media.ts[mine[1]], pl.rtp.seq[mine[1]], pl.rtp.ssrc[mine[1]]))
    else:  # no media: no masks to make (most short calls)
        packets = ((media.ts, pl.rtp.seq, pl.rtp.ssrc),) * 2
    view = build_view(summary, call, dirs, peaks.finish() if peaks is not None else None,
                      packets)
    view_rel = f"{rel}/{stem}.view.json"
    put(os.path.join(target, stem + ".view.json"), json_line(view))
    put(os.path.join(target, stem + ".xml"), xml)
    # Same stem = same Call-ID and start time: a re-import of a call already indexed (its
    # summary existed; the write says so, a stat less per call).
    indexed_before = put(summary_path, json_line(summary))
    manifest_rel = None
    if options.signing_key:
        manifest_rel = f"{rel}/{stem}.manifest.jws"
        files = [f + sfx for f in [
            *audio_files, f"{rel}/{stem}.xml", f"{rel}/{stem}.json", view_rel,
            *([sip_rel] if sip_rel else []),
            *([summary["evidence_pcap"]] if "evidence_pcap" in summary else [])]]
        token = _manifest(out_dir, files, call, stem, options, sealer)
        write_atomic(os.path.join(out_dir, manifest_rel), token, options.durable)
    if options.durable:
        sync_path(target)  # the renames above
    if sealer and superseded and superseded != sealer.key_id.hex():
        # the replaced version's key goes: copies of it left anywhere stay unreadable
        KeyStore(store_dir(out_dir, options.key_store)).erase(superseded)
    entry = {
        "call_id": call.call_id,
        "audio": audio_rel,
        "audio_files": audio_files,
        "metadata": f"{rel}/{stem}.xml",
        "summary": f"{rel}/{stem}.json",
        "caller": call_fields["caller"],
        "callee": call_fields["callee"],
        "start": call_fields["start"],
        "answer": call_fields["answer"],
        "end": call_fields["end"],
        "duration": call_fields["duration"],
        "status": call.status,
        "end_reason": call.end_reason,
        "final_code": call.final_code,
        "codecs": codecs,
        "dtmf": "".join(x["digit"] for x in dtmf),
        "early_media": any(x["early_media_packets"] for x in directions),
        "mos": [x["quality"]["mos"] if x["quality"] else None for x in directions],
        "post_dial_delay": call_fields["post_dial_delay"],
        "setup_time": call_fields["setup_time"],
        "hangup_by": call.hangup_by,
        "packets": [x["packets"] for x in directions],
        "lost": [x["lost"] for x in directions],
        "group": decision.group or None if decision is not None else None,
        "retention": decision.retention or None if decision is not None else None,
        "policy_rule": decision.rule if decision is not None else None,
        "paused_seconds": round(sum(p["seconds"] for p in call_fields["paused"]), 3),
        "view": view_rel,
        "sip_pcap": sip_rel,
        "legs": [leg.call_id for leg in record.legs],
        "related": list(record.related),
    }
    if manifest_rel:
        entry["manifest"] = manifest_rel
    search = search_fields(summary)
    if sealer:  # the files are these names plus the suffix; search needs some fields plain
        entry["encrypted"] = sealer.describe()
        entry["search_fields"] = search
    if not indexed_before:
        append_index(out_dir, entry, options.durable)
    if manifest_rel:  # the log: after the call's files and index line are on disk
        now = time.time()
        translog.append(out_dir, {"type": "manifest", "call": stem, "call_id": call.call_id,
                                  "manifest": manifest_rel,
                                  "sha256": hashlib.sha256(token).hexdigest()},
                        options.signing_key, rfc3339(int(now * NS)), now, options.durable)
    drops: Counter[str] = Counter()
    if unassigned:
        drops["media_flow_unassigned"] = unassigned
    for d in dirs:
        for reason, count in d.malformed.items():
            drops[f"malformed_rtp ({reason})"] += count
        drops["rtp_unexpected_payload_type"] += d.unexpected_pt
        drops["rtp_too_late"] += d.late_packets
        drops["rtp_ssrc_limit"] += d.ssrc_overflow
        drops["rtp_segment_limit"] += d.seg1.capped
        drops["rtp_decode_error"] += d.decode_errors
        drops["srtp_auth_failed"] += d.srtp_auth_failed
        drops["srtp_no_key"] += d.srtp_no_key
    return WriteResult(entry, {k: v for k, v in drops.items() if v}, search)


# The per-hop figures of a stream's other copies (the recorded copy's are the direction's).
HOP_FIELDS = ("flows", "packets", "expected", "lost", "duplicates", "out_of_order",
              "jitter_ms_mean", "jitter_ms_max", "quality", "rtcp_packets", "ssrcs")


def _other_hops(call: Call, media: MediaColumns, assigned: list[int], channels: list[int],
                options: WriteOptions) -> list[list[dict[str, Any]]]:
    """Per direction, the figures of the copies of its stream on other hops (statistics
    only, the same code as the recorded copy's): where loss and jitter arose."""
    found: list[list[dict[str, Any]]] = [[], []]
    other = [a if c == OTHER_HOP else -1 for a, c in zip(assigned, channels, strict=True)]
    for j, c in enumerate(channels):  # each other-hop flow on its own
        if c != OTHER_HOP or call.flows[j][4] == 1:
            continue
        one = [other[k] if k == j or (call.flows[k][4] == 1 and channels[k] == OTHER_HOP
                                      and call.flows[k][0][0] == call.flows[j][0][0])
               else -1 for k in range(len(other))]
        hop_dirs = (Direction(call, 0, one, options.srtp_keys),
                    Direction(call, 1, one, options.srtp_keys))
        pl = plan(call, media, hop_dirs, one, _sniff)
        stream_stats(media, pl, hop_dirs, options)
        d = hop_dirs[assigned[j]]
        d.codecs_used = {dec.name for dec in d.decoders.values() if dec is not None}
        for st in d.stats.values():
            st.flush()
        x = direction_json(call, d, None, pl.rate, one)
        found[assigned[j]].append({k: x[k] for k in HOP_FIELDS})
    return found


def leg_json(leg: Call) -> dict[str, Any]:
    """What the summary and the metadata say of a joined leg."""
    return {"call_id": leg.call_id, "caller": leg.caller_uri, "callee": leg.callee_uri,
            "caller_tag": leg.caller_tag, "callee_tag": leg.callee_tag,
            "session_id": next(iter(leg.headers.get("session-id") or []), None),
            "start_ns": leg.start_ns, "end_ns": leg.end_ns or leg.last_ns,
            "start": rfc3339(leg.start_ns), "end": rfc3339(leg.end_ns or leg.last_ns)}


def media_columns(spool: Media) -> MediaColumns:
    """A call's media as columns, wherever it is."""
    if isinstance(spool, SealedSpool):
        return spool_columns(spool.path, spool.key)
    return (spool if isinstance(spool, MediaColumns) else spool.columns()
            if isinstance(spool, CaptureMedia) else spool_columns(spool))


def _sniff(d: Direction, payload: bytes) -> None:
    """One payload's bytes into the direction's histogram (is it encrypted?)."""
    d.histogram += np.bincount(np.frombuffer(payload, np.uint8), minlength=256)
    d.sniffed += 1


# Largest SIP message written to the SIP pcap: what one IPv4 datagram carries.
MAX_SIP_DATAGRAM = 65_000


def _sip_pcap(call: Call, path: str, durable: bool, sealer: Sealer | None) -> None:
    """The call's SIP messages as seen (both hops, retransmissions included) as a pcap
    Wireshark opens: each message one UDP datagram between the addresses and ports it was
    seen on (messages that came over TCP, TLS or WebSocket are written as UDP too). Built
    in memory (a call's SIP log is bounded) and written in one go."""
    buf = _Buffer()
    _frames(PcapWriter(buf, nanosecond=True),
            ((ts, src, sport, dst, dport, raw[:MAX_SIP_DATAGRAM])
             for ts, src, sport, dst, dport, raw in sip_entries(call.sip_log)))
    if sealer:
        write_atomic(path + SUFFIX, sealer.seal(bytes(buf)), durable)
    else:
        write_atomic(path, buf, durable)


class _Buffer(bytearray):
    """A pcap built in memory."""

    def write(self, data: bytes, /) -> int:
        self += data
        return len(data)


def _evidence(call: Call, media: MediaColumns, path: str, durable: bool,
              sealer: Sealer | None) -> None:
    """The call's media packets as a pcap (the policy's keep_pcap): addresses, ports and
    payloads as captured, link and IP headers rebuilt; a paused span keeps only RTP headers,
    as the spool does."""
    def packets() -> Iterator[tuple[int, bytes, int, bytes, int, bytes]]:
        for i, (ts, flow) in enumerate(zip(media.ts.tolist(), media.flow.tolist(),
                                           strict=True)):
            (src, sport), (dst, dport) = call.flows[flow][0], call.flows[flow][1]
            yield ts, src, sport, dst, dport, media.payload(i)

    _pcap(path, packets(), durable, sealer)


def _frames(w: PcapWriter,
            datagrams: Iterable[tuple[int, bytes, int, bytes, int, bytes]]) -> None:
    for ts, src, sport, dst, dport, payload in datagrams:
        if len(src) == 4 and len(dst) == 4:
            w.write(ts, udp_frame(src, sport, dst, dport, payload, w.count))
        elif len(src) == 16 and len(dst) == 16:
            w.write(ts, udp6_frame(src, sport, dst, dport, payload))


def _pcap(path: str, datagrams: Iterable[tuple[int, bytes, int, bytes, int, bytes]],
          durable: bool, sealer: Sealer | None) -> None:
    """UDP datagrams (time, source address and port, destination, payload) as a pcap file,
    written under a temporary name and renamed (sealed, with ``sealer``)."""
    if sealer:
        path += SUFFIX
    tmp = tmp_name(path)
    f: BinaryIO | SealedWriter = sealer.writer(tmp) if sealer else open(tmp, "wb")  # noqa: SIM115
    try:
        _frames(PcapWriter(f, nanosecond=True), datagrams)
        if isinstance(f, SealedWriter):
            f.close(durable)
        else:
            sync_file(f, durable)
    finally:
        f.close()
    os.replace(tmp, path)
