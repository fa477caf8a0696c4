"""``calltap retention run``, ``calltap hold`` and ``calltap erase``: the command-line side of
calltap.retention (times from the wall clock, or ``--now`` for a dry run ahead)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time

from calltap.config import ConfigError, load_config
from calltap.policyfile import PolicyError, load_policy
from calltap.retention import Holds, RetentionError, dispose, due, erase
from writer.timefmt import parse_time, rfc3339

NS = 1_000_000_000


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ret = sub.add_parser("retention", help="remove the recordings past their retention "
                                           "period that no legal hold keeps")
    ret.add_argument("action", choices=("run",))
    ret.add_argument("--out", required=True, help="output directory")
    ret.add_argument("--policy", required=True, metavar="POLICY.toml",
                     help="the policy whose [retention] table gives each class's period")
    ret.add_argument("--config", help="TOML configuration file (signing_key for the log)")
    ret.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")
    ret.add_argument("--now", default="", metavar="TIME",
                     help="judge as of this time (RFC 3339), with --dry-run")
    ret.set_defaults(func=cmd_retention)

    hold = sub.add_parser("hold", help="legal holds: recordings kept past their date")
    hold.add_argument("action", choices=("add", "release", "list"))
    hold.add_argument("hold_id", nargs="?", default="", help="the hold to release")
    hold.add_argument("--out", required=True, help="output directory")
    hold.add_argument("--call", default="", help="hold one call (its id)")
    hold.add_argument("--search", default="", metavar="K=V,...",
                      help="hold every call a search finds, now and later (party=, "
                           "prefix=, from=, to=, q=, group=, cidr=, status= ...)")
    hold.add_argument("--reason", default="", help="the matter the hold is for")
    hold.add_argument("--config", help="TOML configuration file (signing_key for the log)")
    hold.set_defaults(func=cmd_hold)

    era = sub.add_parser("erase", help="remove one recording now (an erasure request)")
    era.add_argument("call", metavar="ID", help="the call's id")
    era.add_argument("--out", required=True, help="output directory")
    era.add_argument("--reason", required=True, help="why (kept in the log)")
    era.add_argument("--config", help="TOML configuration file (signing_key for the log)")
    era.set_defaults(func=cmd_erase)


def _who() -> str:
    return "cli:" + getpass.getuser()


def cmd_retention(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, {})
        policy = load_policy(args.policy)
    except (ConfigError, PolicyError) as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.out):
        print(f"calltap: {args.out}: no such output directory", file=sys.stderr)
        return 2
    if args.now and not args.dry_run:
        print("calltap: --now only with --dry-run (recordings go by the real clock)",
              file=sys.stderr)
        return 2
    now_ns = parse_time(args.now) if args.now else time.time_ns()
    if now_ns is None:
        print(f"calltap: --now {args.now!r}: not an RFC 3339 time", file=sys.stderr)
        return 2
    classes = dict(policy.retention)
    try:
        held = Holds(args.out, cfg.catalog_url).held()
    except RetentionError as exc:
        print(f"calltap: {exc}", file=sys.stderr)
        return 2
    kept = gone = 0
    for d in due(args.out, classes, now_ns):
        if d.key in held:
            kept += 1
            print(f"kept by a legal hold: {d.key} ({d.retention}, expired "
                  f"{rfc3339(d.expired_ns)})")
            continue
        if args.dry_run:
            print(f"would remove: {d.key} ({d.retention}, expired {rfc3339(d.expired_ns)})")
        else:
            now = time.time()
            dispose(args.out, d, cfg.signing_key, rfc3339(int(now * NS)), now, cfg.key_store,
                    cfg.catalog_url)
            print(f"removed: {d.key} ({d.retention}, expired {rfc3339(d.expired_ns)})")
        gone += 1
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {gone} recordings; {kept} kept by legal holds", file=sys.stderr)
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, {})
        holds = Holds(args.out, cfg.catalog_url)
        key = cfg.signing_key
        now = time.time()
        when = rfc3339(int(now * NS))
        if args.action == "add":
            search = dict(kv.split("=", 1) for kv in args.search.split(",") if "=" in kv)
            if args.search and not search:
                raise RetentionError("--search: filters as name=value, comma-separated")
            hid = holds.add(args.call, search, args.reason, _who(), when, key, now)
            print(hid)
        elif args.action == "release":
            if not args.hold_id:
                raise RetentionError("which hold? (calltap hold list)")
            holds.release(args.hold_id, _who(), when, key, now)
            print(f"hold {args.hold_id} released")
        else:
            for h in holds.load():
                what = f"call {h['call']}" if h["call"] else "search " + ",".join(
                    f"{k}={v}" for k, v in h["search"].items())
                state = f"released {h['released']}" if h["released"] else "in force"
                print(f"{h['id']}\t{state}\t{what}\t{h['reason']}\t{h['by']} {h['since']}")
    except (RetentionError, ConfigError) as exc:
        print(f"calltap: hold {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, {})
        now = time.time()
        files = erase(args.out, args.call, args.reason, _who(), cfg.signing_key,
                      rfc3339(int(now * NS)), now, cfg.key_store, cfg.catalog_url)
    except (RetentionError, ConfigError) as exc:
        print(f"calltap: erase: {exc}", file=sys.stderr)
        return 1
    print(f"erased {args.call}: {len(files)} files removed; the log records it")
    return 0
