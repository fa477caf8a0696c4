"""Recording policy: which calls are recorded, in which group and how, who the parties
are, and what pauses a recording. Sans-IO: rules are matched against the facts of a call
(numbers, addresses, headers, where and when it was captured), never against a clock.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

from correlate.call import Call

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Identities kept per party: PAI, RPID, Diversion and From rarely exceed a handful.
MAX_IDENTITIES = 8
# Headers copied per call into the summary and metadata: values are cut to this length.
MAX_HEADER_VALUE = 1024


@dataclass(frozen=True)
class Text:
    """A string condition: exact, prefix or regular expression (searched)."""

    kind: str
    value: str
    pattern: re.Pattern[str] | None = None

    def test(self, candidates: list[str]) -> str | None:
        """The first candidate that matches, or None."""
        for c in candidates:
            if self.kind == "exact" and c == self.value:
                return c
            if self.kind == "prefix" and c.startswith(self.value):
                return c
            if self.pattern is not None and self.pattern.search(c):
                return c
        return None

    def __str__(self) -> str:
        return f"{self.kind} {self.value!r}"


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one call."""

    rule: str
    record: bool = True
    group: str = ""
    audio_format: str = ""
    layout: str = ""
    retention: str = ""
    keep_pcap: bool = False
    relay_hop: str = ""
    """Which copy of a relayed stream is recorded ('' for the configured one)."""

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "record": self.record, "group": self.group or None,
                "retention": self.retention or None, "keep_pcap": self.keep_pcap}


@dataclass(frozen=True)
class Rule:
    """One policy rule: conditions (all must hold; none means "any call") and an action."""

    name: str
    line: int
    caller: Text | None = None
    callee: Text | None = None
    caller_ip: tuple[IpNetwork, ...] = ()
    callee_ip: tuple[IpNetwork, ...] = ()
    signalling_ip: tuple[IpNetwork, ...] = ()
    headers: tuple[tuple[str, Text], ...] = ()
    source: Text | None = None
    vlan: frozenset[int] = frozenset()
    days: frozenset[str] = frozenset()
    hours: tuple[tuple[int, int], ...] = ()
    """Minutes after midnight [start, end); a range past midnight wraps."""
    action: Decision = Decision("")
    """What a call it matches gets; its ``rule`` is this rule's name."""

    def __post_init__(self) -> None:
        if self.action.rule != self.name:
            object.__setattr__(self, "action", replace(self.action, rule=self.name))


@dataclass(frozen=True)
class IdentitySpec:
    """Which headers name the parties, in order of preference, and extra headers to copy."""

    caller: tuple[str, ...] = ("from",)
    callee: tuple[str, ...] = ("to",)
    original_callee: tuple[str, ...] = ()
    caller_regex: re.Pattern[str] | None = None
    callee_regex: re.Pattern[str] | None = None
    extra_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class PauseSpec:
    """What pauses and resumes a recording, as seen in the call itself."""

    header: str = ""
    """A SIP header (any request or response of the call) whose value says it."""
    pause_values: tuple[str, ...] = ("pause", "off", "stop")
    resume_values: tuple[str, ...] = ("resume", "on", "start")
    info_type: str = ""
    """An INFO body content type whose body says pause or resume."""
    dtmf_pause: str = ""
    dtmf_resume: str = ""


DEFAULT_DECISION = Decision("default")


@dataclass
class Facts:
    """What a rule can look at, gathered from a call when its INVITE was seen."""

    caller: list[str]
    callee: list[str]
    caller_ips: list[str]
    callee_ips: list[str]
    signalling_ips: list[str]
    headers: dict[str, list[str]]
    source: str
    vlan: int
    start: datetime


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    identity: IdentitySpec = field(default_factory=IdentitySpec)
    pause: PauseSpec = field(default_factory=PauseSpec)
    timezone: tzinfo = UTC
    source: str = ""
    """The file it came from ("" for the built-in default: record everything)."""
    retention: tuple[tuple[str, int], ...] = ()
    """Retention classes: (name, seconds a recording of the class is kept); "default" for
    calls no rule gave a class."""

    def headers_needed(self) -> frozenset[str]:
        """Lower-case header names the tracker must keep from each INVITE."""
        names = {*self.identity.caller, *self.identity.callee, *self.identity.original_callee,
                 *self.identity.extra_headers}
        for r in self.rules:
            names.update(h for h, _t in r.headers)
        return frozenset(n for n in names if n not in ("from", "to"))

    def facts(self, call: Call, source: str = "", vlan: int = -1) -> Facts:
        from capture.decode import format_ip

        caller = [i for uri, _d in identities(call, self.identity, 0) for i in _forms(uri)]
        callee = [i for uri, _d in identities(call, self.identity, 1) for i in _forms(uri)]
        ips = [[format_ip(o.addr) for o in call.offers[s]] for s in (0, 1)]
        sig = [format_ip(ep[0]) for ep in (call.caller_signal, call.callee_signal) if ep]
        return Facts(caller, callee, [*sig[:1], *ips[0]], [*sig[1:], *ips[1]], sig,
                     call.headers, source, vlan,
                     datetime.fromtimestamp(call.start_ns / 1e9, UTC).astimezone(self.timezone))

    def decide_call(self, call: Call, source: str = "", vlan: int = -1) -> Decision:
        """The decision for a call; without rules, the default, without working out the
        facts no rule would look at."""
        if not self.rules:
            return DEFAULT_DECISION
        return self.decide(self.facts(call, source, vlan))

    def decide(self, facts: Facts) -> Decision:
        for rule in self.rules:
            if not _why_not(rule, facts):
                return rule.action
        return DEFAULT_DECISION

    def explain(self, facts: Facts) -> list[str]:
        """One line per rule tried, saying why it did or did not match, up to the first that
        matched."""
        lines = []
        for rule in self.rules:
            why = _why_not(rule, facts)
            where = f"line {rule.line}" if rule.line else "built in"
            if why:
                lines.append(f"rule {rule.name!r} ({where}): no: {why}")
                continue
            a = rule.action
            extra = "".join(f", {k} {v}" for k, v in (("group", a.group),
                                                       ("retention", a.retention),
                                                       ("format", a.audio_format),
                                                       ("layout", a.layout),
                                                       ("relay_hop", a.relay_hop)) if v)
            lines.append(f"rule {rule.name!r} ({where}): MATCH: {_why(rule, facts)} -> "
                         f"{'record' if a.record else 'skip'}{extra}"
                         f"{', keep pcap' if a.keep_pcap else ''}")
            return lines
        lines.append("no rule matched: the default records the call")
        return lines


def _forms(uri: str) -> list[str]:
    """A party as rules see it: the URI, then its user part (the number)."""
    user = uri.split(":", 1)[-1].split("@", 1)[0].split(";", 1)[0]
    return [uri, user] if user and user != uri else [uri]


def _in(ips: list[str], nets: tuple[IpNetwork, ...]) -> str | None:
    for ip in ips:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if any(addr in n for n in nets):
            return ip
    return None


def _checks(rule: Rule, f: Facts) -> list[tuple[str, str | None]]:
    """(condition, what satisfied it or None) for each condition the rule has."""
    out: list[tuple[str, str | None]] = []
    if rule.caller is not None:
        out.append((f"caller {rule.caller}", rule.caller.test(f.caller)))
    if rule.callee is not None:
        out.append((f"callee {rule.callee}", rule.callee.test(f.callee)))
    for label, nets, ips in (("caller ip", rule.caller_ip, f.caller_ips),
                             ("callee ip", rule.callee_ip, f.callee_ips),
                             ("signalling ip", rule.signalling_ip, f.signalling_ips)):
        if nets:
            out.append((f"{label} in {', '.join(map(str, nets))}", _in(ips, nets)))
    for name, text in rule.headers:
        out.append((f"header {name} {text}", text.test(f.headers.get(name, []))))
    if rule.source is not None:
        out.append((f"source {rule.source}", rule.source.test([f.source])))
    if rule.vlan:
        out.append((f"vlan in {sorted(rule.vlan)}",
                    str(f.vlan) if f.vlan in rule.vlan else None))
    if rule.days:
        day = DAYS[f.start.weekday()]
        out.append((f"day in {sorted(rule.days)}", day if day in rule.days else None))
    if rule.hours:
        minute = f.start.hour * 60 + f.start.minute
        hit = any(a <= minute < b if a <= b else (minute >= a or minute < b)
                  for a, b in rule.hours)
        out.append(("time in " + ", ".join(f"{a // 60:02}:{a % 60:02}-{b // 60:02}:{b % 60:02}"
                                           for a, b in rule.hours),
                    f.start.strftime("%H:%M") if hit else None))
    return out


def _why_not(rule: Rule, f: Facts) -> str:
    for cond, hit in _checks(rule, f):
        if hit is None:
            return f"{cond} does not hold"
    return ""


def _why(rule: Rule, f: Facts) -> str:
    checks = _checks(rule, f)
    if not checks:
        return "no conditions (matches every call)"
    return "; ".join(f"{cond} ({hit!r})" for cond, hit in checks)


def identities(call: Call, spec: IdentitySpec, side: int) -> list[tuple[str, str]]:
    """(URI, display name) of each identity of one party, preferred first: the headers the
    policy names (P-Asserted-Identity, Remote-Party-ID, a custom one, ...), then, for the
    callee, the originally called party (History-Info, Diversion)."""
    names = spec.caller if side == 0 else (*spec.callee, *spec.original_callee)
    regex = spec.caller_regex if side == 0 else spec.callee_regex
    found: list[tuple[str, str]] = []
    for name in names:
        if name == "from":
            values = [f"<{call.caller_uri}>"] if call.caller_uri else []
            pairs = [(call.caller_uri, call.caller_name)] if call.caller_uri else []
        elif name == "to":
            values = [f"<{call.callee_uri}>"] if call.callee_uri else []
            pairs = [(call.callee_uri, call.callee_name)] if call.callee_uri else []
        else:
            values = call.headers.get(name, [])
            pairs = [p for v in values for p in _name_addrs(v)]
        if regex is not None:
            pairs = []
            for v in values:
                m = regex.search(v)
                if m:
                    pairs.append((m.group(1) if m.groups() else m.group(0), ""))
        for p in pairs:
            if p[0] and p[0] not in (x[0] for x in found):
                found.append(p)
    return found[:MAX_IDENTITIES]


_NAME_ADDR = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^<,"]*?))\s*<([^>]*)>|\s*([^\s,;<>"]+)')


def _name_addrs(value: str) -> list[tuple[str, str]]:
    """(URI, display name) of each name-addr in a header value (RFC 3261 section 25.1:
    comma-separated for P-Asserted-Identity, History-Info, Diversion)."""
    out = []
    for m in _NAME_ADDR.finditer(value):
        display = (m.group(1) or m.group(2) or "").strip()
        uri = m.group(3) if m.group(3) is not None else m.group(4)
        if uri and ":" in uri:
            out.append((uri.strip(), display))
        # skip header parameters up to the next comma
    return out


# Pause spans kept per call; past this a misbehaving trigger keeps the call paused from its
# last pause on (more silence, never audio that should not be there).
MAX_PAUSES = 64
# DTMF digits remembered per call to recognise a pause or resume sequence.
MAX_PAUSE_DIGITS = 16
RFC4733_DIGITS = "0123456789*#ABCD"


def set_paused(call: Call, ts_ns: int, on: bool) -> bool:
    """Pause or resume ``call``'s recording at capture time ``ts_ns``; True if it changed."""
    if on and not call.paused:
        if len(call.pauses) >= MAX_PAUSES:
            call.pauses[-1][1] = 0
        else:
            call.pauses.append([ts_ns, 0])
        return True
    if not on and call.paused:
        call.pauses[-1][1] = max(ts_ns, call.pauses[-1][0])
        return True
    return False


def feed_digit(call: Call, spec: PauseSpec, ts_ns: int, digit: str) -> None:
    """A DTMF digit of the call (SIP INFO or RFC 4733): pause or resume on a sequence."""
    if not (spec.dtmf_pause or spec.dtmf_resume):
        return
    call.pause_digits = (call.pause_digits + digit)[-MAX_PAUSE_DIGITS:]
    if spec.dtmf_pause and call.pause_digits.endswith(spec.dtmf_pause):
        set_paused(call, ts_ns, True)
        call.pause_digits = ""
    elif spec.dtmf_resume and call.pause_digits.endswith(spec.dtmf_resume):
        set_paused(call, ts_ns, False)
        call.pause_digits = ""


def message_trigger(spec: PauseSpec, header_value: str, content_type: str, body: bytes
                    ) -> bool | None:
    """True (pause), False (resume) or None from one SIP message: the pause header's value,
    or an INFO body of the configured content type."""
    words: list[str] = []
    if spec.header and header_value:
        words.append(header_value.strip().lower())
    if spec.info_type and content_type.split(";", 1)[0].strip().lower() == spec.info_type:
        words.append(body[:64].decode("utf-8", "replace").strip().lower())
    for w in words:
        if w in spec.pause_values:
            return True
        if w in spec.resume_values:
            return False
    return None
