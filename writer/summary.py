"""The summary JSON of a written call: call fields, per-direction figures, DTMF, holds and
the capture-integrity verdict."""

from __future__ import annotations

from typing import Any

from capture.decode import format_ip
from correlate.call import SIDE_NAMES, Call, Flow
from writer.direction import Direction
from writer.mos import mos, r_factor
from writer.timefmt import rfc3339
from writer.timeline import StereoWindow

NS = 1_000_000_000


# Share of the observed loss the receiver must report for it to be the network's.
NETWORK_SHARE = 0.5


def integrity(call: Call, d: Direction, other: dict[str, Any]) -> dict[str, Any]:
    """Whose loss is it: the network's (the receiver's RTCP reports it too), the capture's
    (the receiver reports none: the mirror dropped it), or a party missing entirely from
    an answered two-way call (asymmetric mirroring)."""
    observed = sum(s.lost for s in d.stats.values())
    reported = sum(max(0, r["cumulative_lost"]) for r in d.far_end.values())
    packets = sum(s.packets for s in d.stats.values())
    evidence = {"observed_lost": observed, "reported_lost": reported,
                "receiver_reports": len(d.far_end)}
    mine, theirs = call.offers[d.channel], call.offers[1 - d.channel]
    should_send = bool(mine and theirs) and mine[-1].direction in ("sendrecv", "sendonly") \
        and theirs[-1].direction in ("sendrecv", "recvonly")
    if packets == 0 and other["packets"] > 0 and call.answer_ns and should_send:
        evidence["other_direction_packets"] = other["packets"]
        return {"verdict": "asymmetric-mirror", "evidence": evidence}
    if observed == 0:
        return {"verdict": "none", "evidence": evidence}
    if not d.far_end:
        return {"verdict": "unknown", "evidence": evidence}
    if reported == 0:
        return {"verdict": "capture-loss", "evidence": evidence}
    if reported >= observed * NETWORK_SHARE:
        return {"verdict": "network-loss", "evidence": evidence}
    return {"verdict": "mixed", "evidence": evidence}


def dtmf_digits(call: Call, dirs: tuple[Direction, Direction], zero_ns: int
                ) -> list[dict[str, Any]]:
    """Digits from both directions' telephone-events and from SIP INFO, in time order;
    ``offset`` is seconds from sample 0 of the recording."""
    found: list[dict[str, Any]] = []
    for d in dirs:
        if d.events is not None:
            for ev in d.events.finish():
                found.append({**ev, "side": SIDE_NAMES[d.channel]})
    for ts, side, digit, duration in call.sip_dtmf:
        found.append({"digit": digit, "start_ns": ts, "duration_ms": duration,
                      "source": "sip-info", "side": SIDE_NAMES[side]})
    found.sort(key=lambda x: int(x["start_ns"]))
    for x in found:
        x["time"] = rfc3339(x["start_ns"])
        x["offset"] = round((x.pop("start_ns") - zero_ns) / NS, 3)
    return found


def _holds(call: Call, sender: int) -> list[dict[str, str | None]]:
    """Periods in which ``sender`` was not to send (RFC 3264 section 8.4): its own offers
    said sendonly->recvonly is theirs; here: either side's inactive, the sender's recvonly,
    or the receiver's sendonly, from the media history in time order."""
    events = sorted((o.time_ns, side, o.direction) for side in (0, 1) for o in call.offers[side])
    held_by = {0: False, 1: False}
    periods: list[dict[str, str | None]] = []
    start = 0
    for ts, side, direction in events:
        before = any(held_by.values())
        quiet = direction == "inactive" or (
            direction == "recvonly" if side == sender else direction == "sendonly")
        held_by[side] = quiet
        after = any(held_by.values())
        if after and not before:
            start = ts
        elif before and not after:
            periods.append({"start": rfc3339(start), "end": rfc3339(ts)})
    if any(held_by.values()):
        periods.append({"start": rfc3339(start), "end": None})
    return periods


def call_json(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "caller": call.caller_uri,
        "caller_name": call.caller_name,
        "callee": call.callee_uri,
        "callee_name": call.callee_name,
        "caller_tag": call.caller_tag,
        "callee_tag": call.callee_tag,
        "caller_signalling": endpoint_label(call.caller_signal),
        "callee_signalling": endpoint_label(call.callee_signal),
        "user_agent": call.user_agent,
        "start": rfc3339(call.start_ns),
        "start_ns": call.start_ns,
        "answer": rfc3339(call.answer_ns) if call.answer_ns else None,
        "end": rfc3339(call.end_ns),
        "end_ns": call.end_ns,
        "duration": round(max(0, call.end_ns - call.start_ns) / NS, 3),
        "talk_time": round(max(0, call.end_ns - call.answer_ns) / NS, 3) if call.answer_ns else 0,
        "status": call.status,
        "final_code": call.final_code,
        "final_reason": call.final_reason,
        "end_reason": call.end_reason,
        "hangup_by": call.hangup_by,
        "post_dial_delay": round((call.ringing_ns - call.start_ns) / NS, 3)
        if call.ringing_ns else None,
        "setup_time": round((call.answer_ns - call.start_ns) / NS, 3) if call.answer_ns else None,
        "reason": {"protocol": call.reason[0], "cause": call.reason[1], "text": call.reason[2]}
        if call.reason else None,
        "sip_retransmissions": call.retransmissions,
        "sip_messages": call.sip_messages,
        "illegal_transitions": call.illegal_transitions,
        "media": {SIDE_NAMES[s]: [o.to_json() for o in call.offers[s]] for s in (0, 1)},
    }


def endpoint_label(ep: tuple[bytes, int] | None) -> str:
    if ep is None:
        return ""
    host = format_ip(ep[0])
    return f"[{host}]:{ep[1]}" if ":" in host else f"{host}:{ep[1]}"


def flow_label(f: Flow) -> str:
    """source -> destination of a media flow, as summaries and `calltap stats` show it."""
    return f"{endpoint_label(f[0])} -> {endpoint_label(f[1])}"


def _quality(d: Direction) -> dict[str, Any] | None:
    """The E-model figures of one direction: loss the listener hears (network loss plus
    jitter-buffer discards) and a one-way delay of half the RTCP round trip (when known) plus
    the modelled buffer's mean depth."""
    expected = sum(s.expected for s in d.stats.values())
    codec = sorted(d.codecs_used)[0] if d.codecs_used else ""
    if not expected or not codec:
        return None
    heard_lost = sum(s.lost + s.jb.discards for s in d.stats.values())
    loss = min(100.0, heard_lost * 100.0 / expected)
    worst = max(s.worst_second_loss for s in d.stats.values())
    rtts = [r["rtt_ms"] for r in d.far_end.values() if r.get("rtt_ms") is not None]
    buffer_ms = max(s.jb.mean_depth_ms for s in d.stats.values())
    one_way = (max(rtts) / 2 if rtts else 0.0) + buffer_ms
    r = r_factor(codec, loss, one_way)
    first = next(iter(d.stats.values())).jb
    return {"r_factor": round(r, 2), "mos": round(mos(r), 2),
            "loss_heard_pct": round(loss, 2),
            "jitter_buffer": first.mode,
            "jitter_buffer_ms": round(buffer_ms, 1),
            "one_way_delay_ms": round(one_way, 1),
            "worst_second_mos": round(mos(r_factor(codec, worst, one_way)), 2)}


def direction_json(
    call: Call, d: Direction, window: StereoWindow | None, rate: int, channels: list[int]
) -> dict[str, Any]:
    flows = [f for f, ch in zip(call.flows, channels, strict=True) if ch == d.channel and not f[4]]
    ssrcs = [{**s.to_json(), "flow": flow_label(call.flows[k & 0xFFFF]),
              "cname": d.cnames.get(s.ssrc)} for k, s in d.stats.items()]
    jit_max = max((s["jitter_ms_max"] for s in ssrcs), default=0.0)
    quality = _quality(d) if d.stats else None
    jit_mean = max((s["jitter_ms_mean"] for s in ssrcs), default=0.0)
    packets = expected = lost = duplicates = out_of_order = 0
    for st in d.stats.values():  # one pass (none at all for a call without media)
        packets += st.packets
        expected += st.expected
        lost += st.lost
        duplicates += st.duplicates
        out_of_order += st.out_of_order
    return {
        "channel": d.channel,
        "side": SIDE_NAMES[d.channel],
        "src": endpoint_label(flows[0][0]) if flows else "",
        "dst": endpoint_label(flows[0][1]) if flows else "",
        "flows": [flow_label(f) for f in flows],
        "packets": packets,
        "expected": expected,
        "lost": lost,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "late_packets": d.late_packets,
        "early_media_packets": d.early_packets,
        "paused_packets": d.paused_packets,
        "late_ms": round(window.late_samples[d.channel] * 1000 / rate, 1) if window else 0.0,
        "jitter_ms_mean": jit_mean,
        "quality": quality,
        "jitter_ms_max": jit_max,
        "malformed_rtp": dict(d.malformed),
        "rtcp_packets": d.rtcp,
        "far_end_reports": {f"0x{k:08x}": v for k, v in sorted(d.far_end.items())},
        "far_end_voip_metrics": {f"0x{k:08x}": v for k, v in sorted(d.far_end_xr.items())},
        "control_packets": d.control,
        "unexpected_payload_type": d.unexpected_pt,
        "decode_errors": d.decode_errors,
        "srtp": {"keys": sorted(d.srtp_keys_used), "auth_failed": d.srtp_auth_failed,
                 "no_key": d.srtp_no_key} if d.secure or d.srtp_keys_used else None,
        "ssrcs": ssrcs,
        "ssrc_overflow": d.ssrc_overflow,
        "codecs": sorted(d.codecs_used),
        "first_packet": rfc3339(d.first_ns) if d.first_ns else None,
        "last_packet": rfc3339(d.last_ns) if d.last_ns else None,
        "segments": [
            {
                "ssrc": f"0x{s.ssrc:08x}",
                "codec": s.codec,
                "start": rfc3339(s.first_ns),
                "end": rfc3339(s.last_ns),
                "clock_drift_ppm": round(s.b * 1e6, 1),
                "packets": s.packets,
                "gaps_filled_ms": round(s.gap_samples * 1000 / rate, 1) if rate else 0.0,
                "early_media": s.first_ns < d.answer_ns,
            }
            for s in d.segments
        ],
        "hold": _holds(call, d.channel),
    }
