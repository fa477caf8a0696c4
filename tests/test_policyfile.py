from __future__ import annotations

from pathlib import Path

import pytest

from calltap.policyfile import PolicyError, load_policy

GOOD = """\
timezone = "Europe/London"

[identity]
caller = ["P-Asserted-Identity", "From"]
extra_headers = ["X-Queue"]

[pause]
header = "X-Record"
dtmf_pause = "*7"
dtmf_resume = "*8"

[[rule]]
name = "hr"
callee = { prefix = "+44207946" }
record = false

[[rule]]
name = "rest"
group = "general"
format = "flac"
"""


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "p.toml"
    p.write_text(text)
    return str(p)


def test_good_file(tmp_path: Path) -> None:
    p = load_policy(write(tmp_path, GOOD))
    assert [(r.name, r.line, r.action.record) for r in p.rules] == [("hr", 12, False),
                                                              ("rest", 17, True)]
    assert p.rules[1].action.audio_format == "flac"
    assert p.identity.caller == ("p-asserted-identity", "from")
    assert p.headers_needed() == frozenset({"p-asserted-identity", "x-queue"})
    assert p.pause.dtmf_pause == "*7" and str(p.timezone) == "Europe/London"


@pytest.mark.parametrize(("text", "message"), [
    ("[[rule]]\nname = 'a'\ncolor = 'red'\n", "line 3: rule 'a': unknown key 'color'"),
    ("[[rule]]\nname = 'a'\ncaller = { regex = '(' }\n",
     "line 3: rule 'a': caller: bad regular expression '('"),
    ("[[rule]]\nname = 'a'\nhours = ['25:00-26:00']\n",
     "line 3: rule 'a': hours '25:00-26:00': expected HH:MM-HH:MM"),
    ("[[rule]]\nname = 'a'\n\n[[rule]]\nname = 'a'\n", "line 4: rule name 'a' is used twice"),
    ("[[rule]]\nname = 'a'\nformat = 'aiff'\n", "line 3: rule 'a': format 'aiff': one of"),
    ("[[rule]]\nname = 'a'\nvlan = [5000]\n", "line 3: rule 'a': vlan must be VLAN ids"),
    ("[[rule]]\nname = 'a'\nrecord = 'no'\n", "line 3: rule 'a': record must be true or false"),
    ("[[rule]]\nname = 'a'\ndays = ['someday']\n", "line 3: rule 'a': days must be a list"),
    ("[[rule]]\nname = 'a'\nheader = 'X-Queue'\n", "line 3: rule 'a': header must be a table"),
    ("[pause]\ndtmf_pause = '*7x'\n", "line 2: pause.dtmf_pause must be 1-8 DTMF digits"),
    ("[pause]\ndtmf_pause = '*7'\ndtmf_resume = '*7'\n",
     "line 3: pause: the same sequence pauses and resumes"),
    ("[identity]\ncaller = 'From'\n", "line 2: identity.caller must be header names"),
    ("timezone = 'Mars/Olympus'\n", "line 1: unknown timezone 'Mars/Olympus'"),
    ("retention = '1y'\n", "line 1: retention must be a table ([retention])"),
    ("[retention]\nshort = 'soon'\n", "line 2: retention short = 'soon'"),
    ("[[rule]]\nname = 'a\n", "line 2: invalid TOML"),
])
def test_errors_name_the_line_and_reason(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    assert str(exc.value).startswith(path) and message in str(exc.value), str(exc.value)
    assert "\n" not in str(exc.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="missing.toml: cannot read"):
        load_policy(str(tmp_path / "missing.toml"))
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(str(p))
