"""The ``calltap`` command."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from calltap import __version__
from calltap.config import ConfigError, load_config
from calltap.importer import Importer, ProgressBar
from calltap.log import log
from calltap.policyfile import PolicyError, load_policy
from capture.errors import CaptureError
from writer.options import WriteOptions

if TYPE_CHECKING:
    from calltap.live import LiveCapture


def _table(entries: list[dict[str, Any]]) -> str:
    """The end-of-import call table: start, caller, callee, duration, codec, packets lost."""
    rows = [("start (UTC)", "caller", "callee", "duration", "status", "codec", "lost")]
    for e in sorted(entries, key=lambda x: x["start"]):
        rows.append(
            (
                e["start"][:19].replace("T", " "),
                _short(e["caller"]),
                _short(e["callee"]),
                f"{e['duration']:.1f}s",
                e["status"],
                ",".join(e["codecs"]) or "-",
                "/".join(str(x) for x in e["lost"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)  # one format for every row
    return "\n".join([line.format(*r).rstrip() for r in rows])


def _short(uri: str, width: int = 32) -> str:
    uri = uri.split(";", 1)[0]
    return uri if len(uri) <= width else uri[: width - 1] + "…"


def reload_on_sighup(imp: Any) -> None:
    """SIGHUP asks the importer to read its policy file again (between packets)."""

    def reload(_sig: int, _frame: Any) -> None:
        imp.reload_requested = True

    signal.signal(signal.SIGHUP, reload)


def stop_on_sigterm(proc: Any) -> None:
    """SIGTERM and SIGINT ask a live process to stop (``stopping``) at its next loop."""

    def stop(_sig: int, _frame: Any) -> None:
        proc.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def cmd_import(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(
            args.config,
            {
                "out": args.out,
                "inactivity_timeout": args.inactivity_timeout,
                "linger": args.linger,
                "unsignalled_timeout": args.unsignalled_timeout,
                "dedup_window": args.dedup_window,
                "jobs": args.jobs,
                "srtp_keys": args.srtp_key,
                "audio_format": args.format,
                "layout": args.layout,
                "comfort_noise": args.comfort_noise,
                "relay_hop": args.relay_hop,
                "join_header": args.join_header,
                "join_legs": False if args.no_join_legs else None,
                "join_by_media": True if args.join_by_media else None,
                "jitter_buffer": args.jitter_buffer,
                "jitter_buffer_ms": args.jitter_buffer_ms,
                "policy": args.policy,
                "encrypt_to": args.encrypt_to,
            },
        )
    except ConfigError as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar() if cfg.progress and not args.no_progress else None
    try:
        imp = Importer(cfg, bar)
    except PolicyError as exc:
        print(f"calltap: policy: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"calltap: {cfg.out}: cannot create output directory: {exc.strerror}",
              file=sys.stderr)
        return 2

    reload_on_sighup(imp)
    failed = 0
    for path in args.files:
        try:
            imp.import_file(path)
        except CaptureError as exc:
            failed += 1
            if bar:
                bar.done()
            print(f"calltap: error: {exc}", file=sys.stderr)
    imp.finish()
    if bar:
        bar.done()
    for line in imp.warnings:
        print(f"calltap: warning: {line}", file=sys.stderr)
    for line in imp.errors:
        print(f"calltap: error: {line}", file=sys.stderr)
    if imp.error_count > len(imp.errors):
        print(f"calltap: error: {imp.error_count - len(imp.errors)} more calls not written",
              file=sys.stderr)
    if imp.written:
        print(_table(imp.written))
    if imp.calls_written > len(imp.written):
        print(f"... and {imp.calls_written - len(imp.written)} more calls in "
              f"{cfg.out}/index.jsonl")
    skipped = f", {imp.calls_skipped} not recorded by policy" if imp.calls_skipped else ""
    print(
        f"{imp.calls_written} calls written ({imp.calls_with_audio} with audio) to {cfg.out}"
        f"{skipped}; {imp.packets} packets read, {imp.sip_packets} SIP, "
        f"{imp.media_packets} media"
    )
    drops = ", ".join(f"{k}={v}" for k, v in sorted(imp.drops.items())) or "none"
    print(f"malformed or ignored packets: {drops}")
    return 1 if failed or imp.error_count else 0


def cmd_policy(args: argparse.Namespace) -> int:
    """`policy check FILE` and `policy test FILE ...`: does the file load, and which rule
    a call matches and why."""
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(f"calltap: policy: {exc}", file=sys.stderr)
        return 2
    if args.action == "check":
        print(f"{args.file}: {len(policy.rules)} rules, valid")
        return 0
    from datetime import UTC, datetime

    from calltap.streams import calls_in
    from correlate.call import Call
    from correlate.policy import identities

    calls: list[Call] = []
    if args.capture:
        try:
            cfg = load_config(args.config, {"policy": args.file})
            calls = [c for c in calls_in(args.capture, cfg)
                     if not args.call or c.call_id == args.call]
        except (ConfigError, CaptureError) as exc:
            print(f"calltap: {exc}", file=sys.stderr)
            return 2
        if not calls:
            print(f"calltap: no call {args.call or ''} in {args.capture}".replace("  ", " "),
                  file=sys.stderr)
            return 1
    else:
        when = datetime.fromisoformat(args.time) if args.time else datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=policy.timezone)
        call = Call("test", args.call or "test-call", int(when.timestamp() * 1e9))
        call.caller_uri, call.callee_uri = args.caller or "", args.callee or ""
        for h in args.header or []:
            name, _, value = h.partition("=")
            call.headers.setdefault(name.strip().lower(), []).append(value.strip())
        from capture.decode import parse_ip

        for attr, ip in (("caller_signal", args.caller_ip), ("callee_signal", args.callee_ip)):
            if ip:
                packed = parse_ip(ip)
                if packed is None:
                    print(f"calltap: {ip!r} is not an IP address", file=sys.stderr)
                    return 2
                setattr(call, attr, (packed, 5060))
        call.source, call.vlan = args.source or "", args.vlan if args.vlan is not None else -1
        calls = [call]
    for call in calls:
        facts = policy.facts(call, call.source, call.vlan)
        who = [", ".join(u for u, _n in identities(call, policy.identity, k)) or "-"
               for k in (0, 1)]
        print(f"call {call.call_id}: caller {who[0]}, callee {who[1]}, "
              f"started {facts.start.isoformat(timespec='seconds')}")
        for line in policy.explain(facts):
            print(f"  {line}")
    return 0


def _live_config(args: argparse.Namespace) -> Any:
    return load_config(args.config, {"policy": getattr(args, "policy", None),
                                     "probe_name": getattr(args, "probe", None)})


def cmd_capture(args: argparse.Namespace) -> int:
    from calltap.live import LiveCapture
    from calltap.metrics import serve
    from capture.live import DEFAULT_FILTER, LiveSource

    try:
        cfg = _live_config(args)
        if args.procs > 1:  # N processes on the interface: this one starts and watches them
            from calltap.fanout import MAX_PROCS, run_fanout
            from calltap.live import probe_default

            if args.procs > MAX_PROCS:
                raise ConfigError(f"--procs {args.procs}: at most {MAX_PROCS}")
            return run_fanout(sys.argv[1:], args.procs, cfg.probe_name or probe_default(),
                              args.spool, args.metrics_port)
        source = LiveSource(args.interface, args.filter or DEFAULT_FILTER, args.snaplen,
                            args.buffer_mb, fanout=args.fanout_group)
        cap = LiveCapture(cfg, args.redis, args.spool, args.interface, args.prefix,
                          shared=args.fanout_group >= 0)
    except (ConfigError, CaptureError, PolicyError) as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2

    stop_on_sigterm(cap)
    reload_on_sighup(cap)
    if args.metrics_port:
        serve(args.metrics_port, lambda: capture_metrics(cap, source))
    log("capture", "started", interface=args.interface, probe=cap.probe,
        restored_calls=cap.restored,
        linktype=source.linktype)
    try:
        cap.run(source)
    finally:
        # the kernel's counters belong to the open handle: read them before closing it
        recv, kdrop, ifdrop = source.stats()
        source.close()
    log("capture", "stopped", jobs_sent=cap.jobs_sent, packets=cap.packets,
        kernel_drops=kdrop, interface_drops=ifdrop, redis_ops_lost=cap.link.dropped)
    return 0


def capture_metrics(cap: LiveCapture, source: Any) -> list[tuple[str, str, dict[str, str], float]]:
    recv, kdrop, ifdrop = source.stats()
    out: list[tuple[str, str, dict[str, str], float]] = [
        ("calltap_packets_total", "counter", {"kind": "all"}, cap.packets),
        ("calltap_packets_total", "counter", {"kind": "sip"}, cap.sip_packets),
        ("calltap_packets_total", "counter", {"kind": "media"}, cap.media_packets),
        ("calltap_bytes_total", "counter", {}, cap.bytes_total),
        ("calltap_pcap_received_total", "counter", {}, recv),
        ("calltap_drops_total", "counter", {"reason": "kernel"}, kdrop),
        ("calltap_drops_total", "counter", {"reason": "interface"}, ifdrop),
        ("calltap_active_calls", "gauge", {}, len(cap.tracker.calls)),
        ("calltap_packets_total", "counter", {"kind": "hep"}, cap.hep_packets),
        ("calltap_packets_total", "counter", {"kind": "reassembled"}, cap.reassembled),
        ("calltap_jobs_sent_total", "counter", {}, cap.jobs_sent),
        ("calltap_redis_pending_ops", "gauge", {}, len(cap.link.pending)),
        ("calltap_redis_ops_dropped_total", "counter", {}, cap.link.dropped),
        ("calltap_redis_up", "gauge", {}, 1 if cap.link.up else 0),
        ("calltap_disk_alarm", "gauge", {}, 1 if cap.disk_alarm else 0),
        ("calltap_calls_not_recorded_total", "counter", {"reason": "policy"},
         cap.calls_skipped),
    ]
    for reason, n in sorted(cap.drops.items()):  # every stage's, summed by reason
        out.append(("calltap_drops_total", "counter", {"reason": reason}, n))
    try:  # the writers' backlog: jobs not yet read, and read but not yet written
        from correlate.keys import WRITERS_GROUP

        # writers delete the jobs they finish: the streams hold what waits or is written
        total = pending = 0
        for k in cap.keys.shards:
            total += cap.link.client.xlen(cap.keys.jobs(k))
            for g in cap.link.client.xinfo_groups(cap.keys.jobs(k)):
                if g["name"].decode() == WRITERS_GROUP:
                    pending += g["pending"]
        out.append(("calltap_jobs_waiting", "gauge", {}, max(0, total - pending)))
        out.append(("calltap_jobs_in_progress", "gauge", {}, pending))
    except Exception:  # noqa: BLE001 - Redis down or no stream yet: no backlog figures
        pass
    return out


def cmd_writer(args: argparse.Namespace) -> int:
    from calltap.importer import options_from
    from calltap.metrics import serve
    from calltap.worker import Worker

    try:
        cfg = _live_config(args)
        from calltap.objects import store_from
        from writer.errors import WriterError

        w = Worker(args.redis, args.out, options_from(cfg), args.prefix,
                   claim_idle_ms=args.claim_idle_ms, store=store_from(cfg),
                   catalog_url=cfg.catalog_url)
    except (ConfigError, PolicyError, WriterError) as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2

    stop_on_sigterm(w)
    if args.metrics_port:
        serve(args.metrics_port, lambda: [
            ("calltap_recordings_written_total", "counter", {}, w.written),
            ("calltap_jobs_parked_total", "counter", {}, w.parked),
            ("calltap_jobs_failed_total", "counter", {}, w.failed),
            ("calltap_jobs_duplicate_total", "counter", {}, w.duplicates),
            ("calltap_disk_alarm", "gauge", {}, 1 if w.disk_alarm else 0)])
    w.run()
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    import os

    from calltap.metrics import serve
    from calltap.webhooks import WebhookSender

    try:
        cfg = load_config(args.config, {})
        if not cfg.webhook_url:
            raise ConfigError("no webhook_url configured")
        if not os.path.isdir(args.out):
            raise ConfigError(f"{args.out}: no such output directory")
        sender = WebhookSender(args.out, cfg.webhook_url, cfg.webhook_secret)
    except (ConfigError, ValueError, RuntimeError, OSError) as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    stop_on_sigterm(sender)
    if args.metrics_port:
        c = sender.counters
        serve(args.metrics_port, lambda: [
            ("calltap_webhooks_delivered_total", "counter", {}, c.delivered),
            ("calltap_webhooks_failures_total", "counter", {}, c.failures),
            ("calltap_webhooks_skipped_total", "counter", {}, c.skipped),
            ("calltap_webhooks_backlog_bytes", "gauge", {}, c.backlog_bytes)])
    try:
        sender.run()
    finally:
        sender.close()
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    """`calltap pause|resume CALL-ID`: tell the capture process, through Redis."""
    import redis

    from calltap.redisconn import connect
    from correlate.keys import CONTROL_MAXLEN, Keys

    try:
        r = connect(args.redis, socket_timeout=5)
        r.xadd(Keys(args.prefix).control, {"action": args.command, "call_id": args.call_id},
               maxlen=CONTROL_MAXLEN, approximate=True)
    except (redis.RedisError, OSError, ValueError) as exc:
        print(f"calltap: {args.redis}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from calltap.supervise import Supervisor

    try:
        sup = Supervisor(args.interface, args.out or "recordings", args.redis or "",
                         args.writers, args.config or "", args.policy or "",
                         args.metrics_port or 0, args.filter or "", args.serve,
                         args.capture_procs)
    except (OSError, RuntimeError, ConfigError, PolicyError) as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    return sup.run()


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from calltap.streams import analyse, format_table

    try:
        cfg = load_config(args.config, {"jitter_buffer": args.jitter_buffer,
                                        "jitter_buffer_ms": args.jitter_buffer_ms})
    except ConfigError as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    options = WriteOptions(jitter_buffer_mode=cfg.jitter_buffer,
                           jitter_buffer_ms=cfg.jitter_buffer_ms,
                           jitter_buffer_max_ms=cfg.jitter_buffer_max_ms)
    failed = 0
    files = []
    for path in args.files:
        try:
            calls, drops, warning = analyse(path, cfg, options)
        except CaptureError as exc:
            failed += 1
            print(f"calltap: error: {exc}", file=sys.stderr)
            continue
        if warning:
            print(f"calltap: warning: {warning}", file=sys.stderr)
        files.append({"file": path, "calls": calls, "dropped": drops})
        if not args.json:
            if len(args.files) > 1:
                print(f"== {path}")
            print(format_table(calls) if calls else "no calls")
            if drops:
                print("malformed or ignored packets: "
                      + ", ".join(f"{k}={v}" for k, v in sorted(drops.items())))
    if args.json:
        json.dump(files, sys.stdout, indent=1)
        print()
    return 1 if failed else 0


def cmd_generate(args: argparse.Namespace) -> int:
    from calltap.generate import GenOptions, generate

    opts = GenOptions(
        calls=args.calls,
        duration=args.duration,
        concurrent=not args.sequential, stagger=args.stagger,
        loss=args.loss,
        reorder=args.reorder,
        duplicate=args.duplicate,
        jitter_ms=args.jitter_ms,
        seed=args.seed,
        codecs=tuple(args.codecs.split(",")),
        drift=args.drift,
        mirror=args.mirror,
        capture_loss=args.capture_loss,
        rtcp=args.rtcp,
        missing_side=args.missing_side,
        varied=args.varied,
        pause_at=args.pause_at,
        resume_at=args.resume_at,
        hold_at=args.hold_at,
        unhold_at=args.unhold_at,
        pause_by=args.pause_by,
    )
    try:
        n = generate(args.output, opts)
    except (OSError, ValueError) as exc:
        print(f"calltap: {args.output}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} packets to {args.output}")
    return 0


class _Skipped:
    """What a subcommand that is not built gives back: it takes any call and ignores it."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: self


class _Only:
    """The subparsers action, building only the subcommand ``name``'s parser: building all
    of them took 20-30 ms of every command's start (argparse looks up message translations
    and the terminal's width for each of some 180 options)."""

    def __init__(self, sub: Any, name: str) -> None:
        self._sub, self._name = sub, name
        self.found = False

    def add_parser(self, name: str, **kw: Any) -> Any:
        if name != self._name:
            return _Skipped()
        self.found = True
        return self._sub.add_parser(name, **kw)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, one subcommand's (if it names one)."""
    p = argparse.ArgumentParser(prog="calltap", description="Passive VoIP call recorder.")
    p.add_argument("--version", action="version", version=f"calltap {__version__}")
    real = p.add_subparsers(dest="command", required=True)
    sub: Any = real if only is None else _Only(real, only)

    imp = sub.add_parser("import", help="record every call in capture files (pcap/pcapng)")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--out", "-o", help="output directory (default: recordings)")
    imp.add_argument("--config", help="TOML configuration file")
    imp.add_argument("--inactivity-timeout", type=float, metavar="SECONDS",
                     help="end a call after this much capture time without packets (300)")
    imp.add_argument("--linger", type=float, metavar="SECONDS",
                     help="capture time an ended call still collects media (2)")
    imp.add_argument("--unsignalled-timeout", type=float, metavar="SECONDS",
                     help="end an RTP-only call after this much silence (30)")
    imp.add_argument("--dedup-window", type=float, metavar="SECONDS",
                     help="identical packets this close are mirror copies; 0 keeps all (0.1)")
    imp.add_argument("--jobs", "-j", type=int, metavar="N",
                     help="writer processes (default: CPUs, at most 4)")
    imp.add_argument("--format", choices=("wav", "flac", "opus", "mp3"),
                     help="audio file format (default wav)")
    imp.add_argument("--layout", choices=("stereo", "mono", "split"),
                     help="stereo: caller left, callee right (default); mono: a mix; "
                          "split: one file per party")
    imp.add_argument("--comfort-noise", choices=("silence", "noise"),
                     help="render RFC 3389 comfort noise as silence (default) or noise")
    imp.add_argument("--join-header", metavar="NAME",
                     help="a header carrying the other B2BUA leg's Call-ID (X-CID style): "
                          "legs so linked, or by RFC 7989 Session-ID, make one recording")
    imp.add_argument("--join-by-media", action="store_true",
                     help="also join B2BUA legs whose G.711 audio matches (no signalled link)")
    imp.add_argument("--no-join-legs", action="store_true",
                     help="write each B2BUA leg as a recording of its own")
    imp.add_argument("--relay-hop", choices=("nearest-sender", "nearest-receiver"),
                     help="a stream seen on two hops (proxy with a media relay): record "
                          "what the talker sent (default) or what reached the listener")
    imp.add_argument("--policy", metavar="POLICY.toml",
                     help="recording policy: which calls, groups, identities, pauses "
                          "(reloaded on SIGHUP)")
    imp.add_argument("--jitter-buffer", choices=("fixed", "adaptive"),
                     help="the listener's jitter buffer the MOS assumes (default fixed)")
    imp.add_argument("--jitter-buffer-ms", type=float, metavar="MS",
                     help="its depth, or an adaptive buffer's starting depth (default 60)")
    imp.add_argument("--srtp-key", action="append", metavar="[SEL=]SUITE:KEY",
                     help="SRTP master key||salt in base64 for streams without SDES keys; "
                          "SEL is 0xSSRC or ADDRESS:PORT (repeatable)")
    imp.add_argument("--encrypt-to", metavar="PUB",
                     help="seal every call's files for this X25519 public key "
                          "(calltap keys init --kind encryption)")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_import)

    cap = sub.add_parser("capture", help="record from a network interface (live)")
    cap.add_argument("--interface", "-i", required=True)
    cap.add_argument("--redis", required=True, metavar="URL")
    cap.add_argument("--spool", required=True, metavar="DIR")
    cap.add_argument("--filter", metavar="BPF", help="capture filter (default: UDP and TCP)")
    cap.add_argument("--snaplen", type=int, default=65535)
    cap.add_argument("--buffer-mb", type=int, default=64, help="kernel buffer size")
    cap.add_argument("--metrics-port", type=int, default=0)
    cap.add_argument("--prefix", default="calltap", help="Redis key prefix")
    cap.add_argument("--probe", metavar="NAME",
                     help="this probe's name (default: probe_name, or the host name); "
                          "probes sharing a Redis need distinct names")
    cap.add_argument("--procs", type=int, default=1, metavar="N",
                     help="N capture processes on the interface (AF_PACKET fanout), "
                          "sharing calls through Redis")
    cap.add_argument("--fanout-group", type=int, default=-1, help=argparse.SUPPRESS)
    cap.add_argument("--config")
    cap.add_argument("--policy", metavar="POLICY.toml")
    cap.set_defaults(func=cmd_capture)

    wr = sub.add_parser("writer", help="write the calls the capture process hands over")
    wr.add_argument("--redis", required=True, metavar="URL")
    wr.add_argument("--out", "-o", required=True)
    wr.add_argument("--metrics-port", type=int, default=0)
    wr.add_argument("--prefix", default="calltap", help="Redis key prefix")
    wr.add_argument("--claim-idle-ms", type=int, default=30_000, metavar="MS",
                    help="take over a job another writer has held this long (default 30 s)")
    wr.add_argument("--config")
    wr.set_defaults(func=cmd_writer)

    for action in ("pause", "resume"):
        ctl = sub.add_parser(action, help=f"{action} the recording of a call in progress")
        ctl.add_argument("call_id", metavar="CALL-ID")
        ctl.add_argument("--redis", required=True, metavar="URL")
        ctl.add_argument("--prefix", default="calltap", help="Redis key prefix")
        ctl.set_defaults(func=cmd_control)

    run = sub.add_parser("run", help="the appliance: capture, writers and Redis, supervised")
    run.add_argument("--interface", "-i", required=True)
    run.add_argument("--out", "-o", help="output directory (default: recordings)")
    run.add_argument("--redis", metavar="URL", help="default: a private redis-server")
    run.add_argument("--writers", type=int, default=2)
    run.add_argument("--capture-procs", type=int, default=1, metavar="N",
                     help="capture processes on the interface (capture --procs)")
    run.add_argument("--filter", metavar="BPF")
    run.add_argument("--metrics-port", type=int, default=0)
    run.add_argument("--config")
    run.add_argument("--policy", metavar="POLICY.toml")
    run.add_argument("--serve", metavar="HOST:PORT", default="",
                     help="also run the dashboard there (calls in progress included)")
    run.set_defaults(func=cmd_run)

    hook = sub.add_parser("webhooks", help="POST each new recording's index line to the "
                                           "configured webhook_url, signed")
    hook.add_argument("--out", required=True, help="output directory of import or run")
    hook.add_argument("--config", help="TOML configuration file (webhook_url, "
                                       "webhook_secret; or CALLTAP_WEBHOOK_* variables)")
    hook.add_argument("--metrics-port", type=int, default=0)
    hook.set_defaults(func=cmd_webhooks)

    pol = sub.add_parser("policy", help="check a recording policy file, or test it on a call")
    pol.add_argument("action", choices=("check", "test"))
    pol.add_argument("file", metavar="POLICY.toml")
    pol.add_argument("--capture", metavar="PCAP", help="test on the calls of this capture")
    pol.add_argument("--call", metavar="CALL-ID", help="only this call (or its Call-ID)")
    pol.add_argument("--caller", metavar="URI", help="a call from this party (no capture)")
    pol.add_argument("--callee", metavar="URI", help="... to this party")
    pol.add_argument("--header", action="append", metavar="NAME=VALUE",
                     help="... with this INVITE header")
    pol.add_argument("--caller-ip", metavar="IP", help="... the caller signalling from it")
    pol.add_argument("--callee-ip", metavar="IP", help="... the callee at it")
    pol.add_argument("--source", metavar="NAME", help="... captured on this interface")
    pol.add_argument("--vlan", type=int, help="... in this VLAN")
    pol.add_argument("--time", metavar="ISO-8601", help="... starting then (default: now)")
    pol.add_argument("--config", help="TOML configuration file")
    pol.set_defaults(func=cmd_policy)

    st = sub.add_parser("stats", help="per call and per stream RTP statistics, no audio")
    st.add_argument("files", nargs="+", metavar="FILE")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--config", help="TOML configuration file")
    st.add_argument("--jitter-buffer", choices=("fixed", "adaptive"),
                    help="the listener's jitter buffer the MOS assumes (default fixed)")
    st.add_argument("--jitter-buffer-ms", type=float, metavar="MS",
                    help="its depth, or an adaptive buffer's starting depth (default 60)")
    st.set_defaults(func=cmd_stats)

    gen = sub.add_parser("generate", help="write a synthetic capture of SIP calls with G.711")
    gen.add_argument("output")
    gen.add_argument("--calls", type=int, default=4)
    gen.add_argument("--duration", type=float, default=10.0, help="seconds of media per call")
    gen.add_argument("--sequential", action="store_true", help="calls one after another")
    gen.add_argument("--stagger", type=float, default=0.25, metavar="SECONDS",
                     help="between two call starts when concurrent (default 0.25; 0.001 puts "
                          "1,000 calls of 30 s all in progress at once)")
    gen.add_argument("--loss", type=float, default=0.0, help="fraction of RTP lost")
    gen.add_argument("--reorder", type=float, default=0.0, help="fraction of RTP reordered")
    gen.add_argument("--duplicate", type=float, default=0.0, help="fraction of RTP duplicated")
    gen.add_argument("--jitter-ms", type=float, default=0.0, help="maximum extra delay")
    gen.add_argument("--codecs", default="PCMU,PCMA", help="codecs to cycle through")
    gen.add_argument("--drift", type=float, default=0.0,
                     help="caller's RTP clock runs this fraction fast (0.0005 = 0.05%%)")
    gen.add_argument("--mirror", default="", metavar="VARIANT",
                     help="deliver the calls as a mirror would: vlan, qinq, gre, erspan-ii, "
                          "erspan-iii, vxlan, ip-in-ip, mpls, hep3, sip-over-tcp, "
                          "fragmented-invite, duplicated-mirror, nat-media-source, ssrc-change, "
                          "relay, relay-rewrite, relay-loss (a proxy with a media relay: "
                          "both hops)")
    gen.add_argument("--capture-loss", type=float, default=0.0,
                     help="fraction of RTP missing from the capture only (not the network)")
    gen.add_argument("--rtcp", action="store_true", help="receivers send RTCP reports")
    gen.add_argument("--missing-side", type=int, choices=(0, 1), default=-1,
                     help="that party's RTP never reaches the capture")
    gen.add_argument("--varied", action="store_true",
                     help="parties, identities, headers, networks and times vary per call")
    gen.add_argument("--pause-at", type=float, default=-1.0, metavar="S",
                     help="the caller pauses the recording this many seconds into the media")
    gen.add_argument("--resume-at", type=float, default=-1.0, metavar="S",
                     help="... and resumes it then")
    gen.add_argument("--hold-at", type=float, default=-1.0, metavar="S",
                     help="the caller puts the callee on hold this many seconds into the media")
    gen.add_argument("--unhold-at", type=float, default=-1.0, metavar="S",
                     help="... and takes the call off hold then")
    gen.add_argument("--pause-by", choices=("header", "info", "dtmf"), default="header",
                     help="pause and resume by X-Record header, INFO body or DTMF *7/*8")
    gen.add_argument("--seed", type=int, default=1)
    gen.set_defaults(func=cmd_generate)

    srv = sub.add_parser("serve", help="the dashboard and its API over an output directory")
    srv.add_argument("--out", required=True, help="output directory of import or run")
    srv.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="where to listen (default 127.0.0.1:8080; another address only "
                          "with users)")
    srv.add_argument("--access", default="", metavar="FILE",
                     help="users, tokens, shares and audit log (default "
                          "OUT/.calltap/access.sqlite)")
    srv.add_argument("--secure-cookies", action="store_true",
                     help="send the login cookie over HTTPS only (behind a TLS proxy)")
    srv.add_argument("--trusted-proxy", default="", metavar="ADDRS",
                     help="proxy addresses whose X-Forwarded-For names the client")
    srv.add_argument("--redis", default="", metavar="URL",
                     help="the capture's Redis: calls in progress, live listening")
    srv.add_argument("--prefix", default="calltap", help="Redis key prefix (calltap)")
    srv.add_argument("--spool", default="", metavar="DIR",
                     help="the capture's spool directory (default OUT/.calltap/spool)")
    srv.add_argument("--config", help="TOML configuration file (single sign-on: oidc_*)")
    srv.set_defaults(func=cmd_serve)

    usr = sub.add_parser("users", help="dashboard users, API tokens and the audit log")
    usr.add_argument("action", choices=("add", "remove", "list", "password", "token",
                                        "revoke-token", "audit"))
    usr.add_argument("name", nargs="?", default="", help="user name (a token id to revoke)")
    usr.add_argument("--out", required=True, help="output directory the dashboard serves")
    usr.add_argument("--access", default="", metavar="FILE",
                     help="default OUT/.calltap/access.sqlite")
    usr.add_argument("--role", default="viewer",
                     help="viewer, listener, investigator or admin (default viewer)")
    usr.add_argument("--prefix", action="append", default=[],
                     help="sees only calls with a party number starting so (repeatable)")
    usr.add_argument("--cidr", action="append", default=[],
                     help="sees only calls with an address in this network (repeatable)")
    usr.add_argument("--group", action="append", default=[],
                     help="sees only calls of this policy group (repeatable)")
    usr.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input, not the terminal")
    usr.add_argument("--scope", default="read",
                     help="a token's rights, comma-separated: read, audio, share, evidence, "
                          "admin (bounded by the user's role)")
    usr.add_argument("--days", type=float, default=90.0, help="a token's lifetime (90)")
    usr.set_defaults(func=cmd_users)

    keys = sub.add_parser("keys", help="the key pairs that sign (Ed25519) and seal (X25519)")
    keys.add_argument("action", choices=("init",))
    keys.add_argument("--dir", required=True,
                      help="signing: writes DIR/signing.key (owner only), DIR/signing.pub and "
                           "a self-signed DIR/signing.crt; encryption: DIR/encryption.key "
                           "(owner only) and DIR/encryption.pub")
    keys.add_argument("--kind", choices=("signing", "encryption"), default="signing",
                      help="which pair (default signing)")
    keys.add_argument("--name", default="", help="the certificate's common name (calltap)")
    keys.set_defaults(func=cmd_keys)

    dec = sub.add_parser("decrypt", help="a sealed output directory's recordings as plain "
                                         "files in another directory")
    dec.add_argument("out", metavar="DIR", help="output directory (sealed)")
    dec.add_argument("--key", required=True, metavar="PRIVATE",
                     help="the X25519 private key (encryption.key)")
    dec.add_argument("--to", required=True, metavar="DIR", help="where the plain files go")
    dec.add_argument("--call", default="", help="only this call (its id or Call-ID)")
    dec.add_argument("--config", help="TOML configuration file (key_store)")
    dec.set_defaults(func=cmd_decrypt)

    ver = sub.add_parser("verify", help="recordings against their signed manifests, and the "
                                        "append-only log against its signed checkpoints")
    ver.add_argument("out", metavar="DIR", help="output directory")
    ver.add_argument("--key", required=True, metavar="PUB",
                     help="the signer's public key (signing.pub), from a trusted copy")
    ver.add_argument("--call", default="", help="only this call (its id or Call-ID)")
    ver.add_argument("--log", action="store_true", help="also the append-only log")
    ver.add_argument("--tsa-ca", default="", metavar="PEM",
                     help="with --log: check each checkpoint's RFC 3161 timestamp against "
                          "this time-stamping authority's CA certificate")
    ver.add_argument("--proof", default="", metavar="ID",
                     help="print the inclusion proof of a call's log entry (JSON)")
    ver.set_defaults(func=cmd_verify)

    if only is None or only in ("retention", "hold", "erase"):
        from calltap.retentioncmd import add_parsers

        add_parsers(sub)

    exp = sub.add_parser("export", help="recorded calls in another format")
    exp.add_argument("format", choices=("vcon",))
    exp.add_argument("out", metavar="DIR", help="output directory")
    exp.add_argument("--to", required=True, metavar="DIR", help="where the files go")
    exp.add_argument("--base-url", required=True, metavar="URL",
                     help="the dashboard's public URL (the recordings are referenced there)")
    exp.add_argument("--call", default="", help="only this call (its id or Call-ID)")
    exp.add_argument("--config", help="TOML configuration file (signing_key)")
    exp.add_argument("--cert", default="", metavar="PEM",
                     help="the signing key's certificate for x5c (default: signing.crt "
                          "beside the key)")
    exp.set_defaults(func=cmd_export)

    cat = sub.add_parser("catalog", help="the search catalog of an output directory")
    cat.add_argument("action", choices=("rebuild",), help="rebuild: from index.jsonl")
    cat.add_argument("--out", required=True, help="output directory of import or run")
    cat.add_argument("--config", help="TOML configuration file (catalog_url)")
    cat.set_defaults(func=cmd_catalog)
    if only is not None and not sub.found:  # not a subcommand: argparse says so, in full
        return build_parser()
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    if not os.path.isdir(args.out):
        print(f"calltap: {args.out}: no such output directory", file=sys.stderr)
        return 2
    from calltap.oidc import Oidc
    from calltap.serve import serve

    try:
        cfg = load_config(args.config, {})
    except ConfigError as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    oidc = Oidc(cfg.oidc_issuer, cfg.oidc_client_id, cfg.oidc_client_secret,
                cfg.oidc_user_claim) if cfg.oidc_issuer else None
    from calltap.importer import options_from

    return serve(args.out, args.listen, args.access, args.secure_cookies, args.trusted_proxy,
                 args.redis, args.prefix, args.spool, oidc, options_from(cfg), cfg.decrypt_key,
                 cfg.catalog_url)


def cmd_users(args: argparse.Namespace) -> int:
    from calltap.userscmd import users

    return users(args)


def cmd_keys(args: argparse.Namespace) -> int:
    import os

    from writer.manifest import new_key_pair

    os.makedirs(args.dir, exist_ok=True)
    if args.kind == "encryption":
        from writer.seal import new_key_pair as new_x25519

        private, public = (os.path.join(args.dir, f"encryption.{x}") for x in ("key", "pub"))
        try:
            new_x25519(private, public)
        except FileExistsError:
            print(f"calltap: {private} exists; a key is never overwritten", file=sys.stderr)
            return 1
        print(f"wrote {public} (encrypt_to in the configuration of writers and probes) and "
              f"{private} (decrypt_key for the dashboard and `calltap decrypt` only; keep a "
              "copy offline: without it no sealed recording can be read)")
        return 0
    private, public = os.path.join(args.dir, "signing.key"), os.path.join(args.dir,
                                                                          "signing.pub")
    try:
        new_key_pair(private, public)
    except FileExistsError:
        print(f"calltap: {private} exists; a key is never overwritten", file=sys.stderr)
        return 1
    from writer.vcon import self_signed_certificate

    cert = os.path.join(args.dir, "signing.crt")
    self_signed_certificate(private, cert, args.name or "calltap")
    print(f"wrote {private} (signing_key in the configuration; keep it on the writers), "
          f"{public} (for `calltap verify --key`) and {cert} (for signed vCons)")
    return 0


def cmd_decrypt(args: argparse.Namespace) -> int:
    from calltap.decrypt import decrypt
    from writer.seal import SealError

    try:
        cfg = load_config(args.config, {})
        rep = decrypt(args.out, args.key, args.to, args.call, cfg.key_store)
    except (ConfigError, SealError) as exc:
        print(f"calltap: decrypt: {exc}", file=sys.stderr)
        return 2
    for p in rep.problems:
        print(f"calltap: decrypt: {p}", file=sys.stderr)
    print(f"restored {rep.files} files of {rep.calls} calls ({rep.bytes} bytes) under "
          f"{args.to}", file=sys.stderr)
    return 1 if rep.problems else 0


def cmd_verify(args: argparse.Namespace) -> int:
    import json
    import os

    from calltap.verify import proof_for, verify_calls, verify_log
    from writer.errors import WriterError

    if not os.path.isdir(args.out):
        print(f"calltap: {args.out}: no such output directory", file=sys.stderr)
        return 2
    try:
        if args.proof:
            print(json.dumps(proof_for(args.out, args.key, args.proof), indent=1))
            return 0
        rep = verify_calls(args.out, args.key, args.call)
        if args.log:
            verify_log(args.out, args.key, rep, args.tsa_ca)
    except WriterError as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    for p in rep.problems:
        print(p)
    log_part = (f"; log: {rep.entries} entries, {rep.checkpoints} signed checkpoint"
                + ("s" if rep.checkpoints != 1 else "")
                + (f", {rep.uncovered} after the last" if rep.uncovered else "")
                + (f", {rep.stamped} timestamped" if args.tsa_ca else "")
                + (f" ({rep.unstamped} not yet)" if rep.unstamped else "")
                if args.log else "")
    print(f"{'FAILED' if rep.problems else 'ok'}: {rep.calls} calls, {rep.files} files"
          f"{log_part}; {len(rep.problems)} problems", file=sys.stderr)
    return 1 if rep.problems else 0


def cmd_export(args: argparse.Namespace) -> int:
    import json
    import os
    import socket
    import time

    from calltap.catalog import call_key, index_entries, read_summary
    from writer.timefmt import rfc3339
    from writer.vcon import build, sign

    try:
        cfg = load_config(args.config, {})
    except ConfigError as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    if not cfg.signing_key:
        print("calltap: export vcon signs what it writes: set signing_key (calltap keys init)",
              file=sys.stderr)
        return 2
    cert = args.cert or os.path.join(os.path.dirname(cfg.signing_key), "signing.crt")
    if not os.path.exists(cert):
        print(f"calltap: {cert}: no certificate for the signing key (calltap keys init "
              "writes one; or give --cert)", file=sys.stderr)
        return 2
    index = os.path.join(args.out, "index.jsonl")
    if not os.path.exists(index):
        print(f"calltap: {index}: no such file", file=sys.stderr)
        return 2
    os.makedirs(args.to, exist_ok=True)
    host = cfg.recorder_name or socket.getfqdn()
    n = sealed = 0
    for entry in index_entries(args.out):
        key = call_key(entry)
        if args.call and args.call not in (key, entry.get("call_id")):
            continue
        if entry.get("encrypted"):  # its summary and audio are sealed: nothing to read
            sealed += 1
            continue
        summary = read_summary(args.out, entry) or {}
        vcon = build(summary, entry, args.out, args.base_url, key, rfc3339(time.time_ns()),
                     host)
        with open(os.path.join(args.to, key + ".vcon.json"), "w", encoding="utf-8") as g:
            json.dump(sign(vcon, cfg.signing_key, cert), g)
        n += 1
    print(f"{n} vCons written to {args.to}")
    if sealed:
        print(f"calltap: {sealed} sealed calls not exported: export them from the copy "
              "`calltap decrypt` restores", file=sys.stderr)
    return 0 if n or not (args.call or sealed) else 1


def cmd_catalog(args: argparse.Namespace) -> int:
    import os
    import sqlite3

    from calltap.catalog import CATALOG_FILE, CatalogError, rebuild

    if not os.path.isdir(args.out):
        print(f"calltap: {args.out}: no such output directory", file=sys.stderr)
        return 2
    try:
        n = rebuild(args.out, load_config(args.config, {}).catalog_url)
    except ConfigError as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"calltap: {os.path.join(args.out, CATALOG_FILE)}: {exc}", file=sys.stderr)
        return 1
    except CatalogError as exc:
        print(f"calltap: catalog: {exc}", file=sys.stderr)
        return 1
    print(f"catalog rebuilt: {n} calls from {os.path.join(args.out, 'index.jsonl')}")
    return 0


# New objects between the cycle collector's young-generation runs (700 by default). Writing
# a short call made hundreds of objects, so the collector ran several times a call and
# walked every object the process had; with this, and the objects made by loading calltap
# and its libraries frozen out of its walks (nor copied into forked writers by them), an
# import of 1,259 short calls took 5% less CPU and wall time. Only cyclic garbage waits
# longer for it.
GC_THRESHOLD = 100_000


def main(argv: Sequence[str] | None = None) -> int:
    gc.set_threshold(GC_THRESHOLD)
    if not gc.get_freeze_count():  # once: a caller's own objects are not ours to freeze
        gc.freeze()
    argv = sys.argv[1:] if argv is None else list(argv)
    first = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(first).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
