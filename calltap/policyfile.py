"""Reading a recording policy file (TOML) into a correlate.policy.Policy, with errors that
name the file and line.

    timezone = "Europe/London"          # for days and hours (default UTC)

    [identity]
    caller = ["P-Asserted-Identity", "Remote-Party-ID", "From"]
    callee = ["To"]
    original_callee = ["History-Info", "Diversion"]
    caller_regex = 'tel:(\\+\\d+)'      # optional: take group 1 of the first header that has it
    extra_headers = ["X-Queue"]         # copied to the summary and metadata

    [pause]
    header = "X-Record"                 # pause / resume in any SIP message of the call
    info_content_type = "application/x-record-control"
    dtmf_pause = "*7"
    dtmf_resume = "*8"

    [retention]                         # how long each class is kept (h, d, w, y)
    default = "365d"                    # calls no rule gave a class
    hr = "7y"

    [[rule]]                            # first match wins; no conditions: every call
    name = "hr line"
    callee = { prefix = "+44207946" }   # a bare string is exact; or { regex = "..." }
    caller_ip = ["10.1.0.0/16"]         # also callee_ip, signalling_ip
    header = { "X-Queue" = "hr" }
    source = "eth1"                     # capture interface, or capture file name
    vlan = [100]
    days = ["mon", "tue", "wed", "thu", "fri"]
    hours = ["08:00-18:00"]
    record = false
    group = "hr"
    format = "flac"                     # layout, retention, keep_pcap, relay_hop
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, tzinfo
from typing import Any

from correlate.policy import DAYS, Decision, IdentitySpec, PauseSpec, Policy, Rule, Text

# Rules per policy: first-match evaluation per call stays cheap, and no deployment needs more.
MAX_RULES = 1000
RULE_KEYS = {"name", "caller", "callee", "caller_ip", "callee_ip", "signalling_ip", "header",
             "source", "vlan", "days", "hours", "record", "group", "format", "layout",
             "retention", "keep_pcap", "relay_hop"}
IDENTITY_KEYS = {"caller", "callee", "original_callee", "caller_regex", "callee_regex",
                 "extra_headers"}
PAUSE_KEYS = {"header", "pause_values", "resume_values", "info_content_type", "dtmf_pause",
              "dtmf_resume"}
_HOURS = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
_DTMF = re.compile(r"^[0-9*#A-D]{1,8}$")


class PolicyError(Exception):
    """A policy file that cannot be used; the message names the file and line."""


class _Lines:
    """Where things are in the file's text, for error messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rules = [i + 1 for i, line in enumerate(self.lines)
                      if line.strip().startswith("[[rule]]")]

    def table(self, header: str) -> int:
        for i, line in enumerate(self.lines):
            if line.strip().startswith(f"[{header}]"):
                return i + 1
        return 0

    def key(self, start: int, key: str) -> int:
        """The line of ``key = ...`` in the table starting at line ``start``."""
        pat = re.compile(rf"^\s*(\"{re.escape(key)}\"|{re.escape(key)})\s*[=.]")
        for i in range(start, len(self.lines)):
            line = self.lines[i]
            if i >= start and line.strip().startswith("[") and i + 1 != start:
                break
            if pat.match(line):
                return i + 1
        return start


def load_policy(path: str) -> Policy:
    """Read and check a policy file; PolicyError (file and line) when it is not usable."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    import tomllib  # only with a policy file: 8 ms of every command's start

    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        end = "(at end of document)" in str(exc)
        where = f" line {m.group(1)}" if m else f" line {len(text.splitlines())}" if end else ""
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise PolicyError(f"{path}{where}: invalid TOML: {reason}") from None
    return parse_policy(data, text, path)


def parse_policy(data: dict[str, Any], text: str, path: str) -> Policy:
    lines = _Lines(text)

    def fail(line: int, msg: str) -> PolicyError:
        return PolicyError(f"{path} line {line}: {msg}" if line else f"{path}: {msg}")

    key = _unknown(data, {"timezone", "identity", "pause", "rule", "retention"})
    if key:
        raise fail(lines.key(0, key), f"unknown setting {key!r}")
    tz: tzinfo = UTC
    if "timezone" in data:
        import zoneinfo

        try:
            tz = zoneinfo.ZoneInfo(str(data["timezone"]))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise fail(lines.key(0, "timezone"),
                       f"unknown timezone {data['timezone']!r}") from None
    identity = _identity(data.get("identity", {}), lines, fail)
    pause = _pause(data.get("pause", {}), lines, fail)
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise fail(lines.key(0, "rule"), "rule must be an array of tables ([[rule]])")
    if len(raw_rules) > MAX_RULES:
        raise fail(lines.rules[MAX_RULES], f"more than {MAX_RULES} rules")
    rules = tuple(_rule(r, k, lines.rules[k] if k < len(lines.rules) else 0, lines, fail)
                  for k, r in enumerate(raw_rules))
    names = [r.name for r in rules]
    for k, name in enumerate(names):
        if name in names[:k]:
            raise fail(rules[k].line, f"rule name {name!r} is used twice")
    retention = _retention(data.get("retention", {}), lines, fail)
    for r in rules:
        if r.action.retention and r.action.retention not in dict(retention) and retention:
            raise fail(r.line, f"retention class {r.action.retention!r} is not in [retention]")
    return Policy(rules, identity, pause, tz, path, retention)


_PERIOD = re.compile(r"^(\d+)\s*([hdwy])$")
_UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _retention(raw: Any, lines: _Lines, fail: Any) -> tuple[tuple[str, int], ...]:
    """``[retention]``: class = "90d" (h, d, w or y of 365 days)."""
    if not isinstance(raw, dict):
        raise fail(lines.key(0, "retention"), "retention must be a table ([retention])")
    start = lines.table("retention")
    out = []
    for name, value in raw.items():
        m = _PERIOD.match(str(value).strip())
        if not m or int(m.group(1)) <= 0:
            raise fail(lines.key(start, name), f"retention {name} = {value!r}: a period such "
                                               'as "90d", "12h", "6w" or "7y"')
        out.append((str(name), int(m.group(1)) * _UNIT_S[m.group(2)]))
    return tuple(out)


def _unknown(raw: dict[str, Any], known: set[str]) -> str | None:
    """The first key of a table that the policy format does not have, if any."""
    extra = sorted(set(raw) - known)
    return extra[0] if extra else None


def _rule(raw: dict[str, Any], k: int, start: int, lines: _Lines, fail: Any) -> Rule:
    def where(key: str) -> int:
        return lines.key(start, key) if start else 0

    name = str(raw.get("name", f"rule {k + 1}"))

    def err(key: str, msg: str) -> PolicyError:
        e: PolicyError = fail(where(key), f"rule {name!r}: {msg}")
        return e

    key = _unknown(raw, RULE_KEYS)
    if key:
        raise err(key, f"unknown key {key!r} (known: {', '.join(sorted(RULE_KEYS))})")
    args: dict[str, Any] = {"name": name, "line": start}
    action: dict[str, Any] = {}
    for key in ("caller", "callee", "source"):
        if key in raw:
            args[key] = _text(raw[key], lambda m, key=key: err(key, f"{key}: {m}"))
    for key in ("caller_ip", "callee_ip", "signalling_ip"):
        if key in raw:
            values = raw[key] if isinstance(raw[key], list) else [raw[key]]
            nets = []
            for v in values:
                try:
                    nets.append(ipaddress.ip_network(str(v), strict=False))
                except ValueError:
                    raise err(key, f"{key}: {v!r} is not an address or network") from None
            args[key] = tuple(nets)
    if "header" in raw:
        if not isinstance(raw["header"], dict) or not raw["header"]:
            raise err("header", 'header must be a table of name = condition, e.g. '
                                '{ "X-Queue" = "sales" }')
        args["headers"] = tuple(
            (str(h).lower(), _text(v, lambda m, h=h: err("header", f"header {h}: {m}")))
            for h, v in raw["header"].items())
    if "vlan" in raw:
        vl = raw["vlan"] if isinstance(raw["vlan"], list) else [raw["vlan"]]
        if not all(isinstance(v, int) and 0 <= v < 4096 for v in vl):
            raise err("vlan", "vlan must be VLAN ids 0-4095")
        args["vlan"] = frozenset(vl)
    if "days" in raw:
        days = [str(d).lower()[:3] for d in raw["days"]] if isinstance(raw["days"], list) \
            else []
        if not days or any(d not in DAYS for d in days):
            raise err("days", f"days must be a list of {', '.join(DAYS)}")
        args["days"] = frozenset(days)
    if "hours" in raw:
        spans = raw["hours"] if isinstance(raw["hours"], list) else [raw["hours"]]
        hours = []
        for h in spans:
            m = _HOURS.match(str(h))
            a = int(m.group(1)) * 60 + int(m.group(2)) if m else -1
            b = int(m.group(3)) * 60 + int(m.group(4)) if m else -1
            if not m or not (0 <= a < 1440 and 0 <= b <= 1440) or a == b:
                raise err("hours", f"hours {h!r}: expected HH:MM-HH:MM")
            hours.append((a, b))
        args["hours"] = tuple(hours)
    for key in ("record", "keep_pcap"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise err(key, f"{key} must be true or false")
            action[key] = raw[key]
    for key in ("group", "retention"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key] or len(raw[key]) > 64:
                raise err(key, f"{key} must be a text of 1-64 characters")
            action[key] = raw[key]
    from writer.audio_out import FORMATS, LAYOUTS
    from writer.hops import RELAY_HOPS

    for key, allowed, field in (("format", FORMATS, "audio_format"),
                                ("layout", LAYOUTS, "layout"),
                                ("relay_hop", RELAY_HOPS, "relay_hop")):
        if key in raw:
            if raw[key] not in allowed:
                raise err(key, f"{key} {raw[key]!r}: one of {', '.join(allowed)}")
            action[field] = raw[key]
    return Rule(**args, action=Decision(name, **action))


def _text(raw: Any, err: Any) -> Text:
    if isinstance(raw, str):
        return Text("exact", raw)
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, value),) = raw.items()
        if kind in ("exact", "prefix") and isinstance(value, str):
            return Text(kind, value)
        if kind == "regex" and isinstance(value, str):
            try:
                return Text(kind, value, re.compile(value))
            except re.error as exc:
                raise err(f"bad regular expression {value!r}: {exc}") from None
    raise err('expected "text", { prefix = "..." } or { regex = "..." }')


def _names(raw: Any, key: str, lines: _Lines, fail: Any, table: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise fail(lines.key(lines.table(table), key), f"{table}.{key} must be header names")
    return tuple(x.lower() for x in raw)


def _identity(raw: dict[str, Any], lines: _Lines, fail: Any) -> IdentitySpec:
    start = lines.table("identity")
    key = _unknown(raw, IDENTITY_KEYS)
    if key:
        raise fail(lines.key(start, key), f"identity: unknown key {key!r}")
    args: dict[str, Any] = {}
    for key in ("caller", "callee", "original_callee", "extra_headers"):
        if key in raw:
            args[key] = _names(raw[key], key, lines, fail, "identity")
    for key in ("caller_regex", "callee_regex"):
        if key in raw:
            try:
                args[key] = re.compile(str(raw[key]))
            except re.error as exc:
                raise fail(lines.key(start, key),
                           f"identity.{key}: bad regular expression: {exc}") from None
    return IdentitySpec(**args)


def _pause(raw: dict[str, Any], lines: _Lines, fail: Any) -> PauseSpec:
    start = lines.table("pause")
    key = _unknown(raw, PAUSE_KEYS)
    if key:
        raise fail(lines.key(start, key), f"pause: unknown key {key!r}")
    args: dict[str, Any] = {}
    if "header" in raw:
        args["header"] = str(raw["header"]).lower()
    if "info_content_type" in raw:
        args["info_type"] = str(raw["info_content_type"]).lower()
    for key in ("pause_values", "resume_values"):
        if key in raw:
            args[key] = tuple(v.lower() for v in _names(raw[key], key, lines, fail, "pause"))
    for key in ("dtmf_pause", "dtmf_resume"):
        if key in raw:
            if not _DTMF.match(str(raw[key])):
                raise fail(lines.key(start, key),
                           f"pause.{key} must be 1-8 DTMF digits (0-9 * # A-D)")
            args[key] = str(raw[key])
    if args.get("dtmf_pause") and args.get("dtmf_pause") == args.get("dtmf_resume"):
        raise fail(lines.key(start, "dtmf_resume"), "pause: the same sequence pauses and resumes")
    return PauseSpec(**args)
