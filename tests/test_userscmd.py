"""`calltap users`: add, list, change a password, make and revoke tokens, remove, and the
audit log as CSV; every change is in the audit log; bad input is one line and exit 1/2."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path

from calltap.accounts import Accounts
from calltap.serve import access_path

PW = "a long enough password"


def users(out: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "calltap.cli", "users", *args, "--out",
                           str(out)], input=stdin, capture_output=True, text=True,
                          check=False, cwd=out if out.exists() else out.parent)


def test_the_whole_round(tmp_path: Path) -> None:
    r = users(tmp_path, "add", "ann", "--role", "listener", "--prefix", "+44", "--cidr",
              "10.0.0.0/8", "--password-stdin", stdin=PW + "\n")
    assert r.returncode == 0 and "ann added (listener)" in r.stdout
    r = users(tmp_path, "list")
    assert "ann\tlistener\tprefix=+44 cidr=10.0.0.0/8" in r.stdout
    r = users(tmp_path, "token", "ann", "--scope", "read,audio", "--days", "1")
    token = r.stdout.strip()
    assert r.returncode == 0 and token.startswith("ct_") and "shown only now" in r.stderr
    acc = Accounts(access_path(str(tmp_path.resolve())))
    who = acc.token(token, time.time())
    assert who is not None and who.rights == frozenset({"read", "audio"})
    assert acc.check_password("ann", PW)
    tid = token.split("_")[1]
    assert users(tmp_path, "revoke-token", tid).returncode == 0
    assert acc.token(token, time.time()) is None
    r = users(tmp_path, "password", "ann", "--password-stdin", stdin=PW + "2\n")
    assert r.returncode == 0 and acc.check_password("ann", PW + "2")
    assert users(tmp_path, "remove", "ann").returncode == 0
    assert not acc.has_users()
    r = users(tmp_path, "audit")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [x["action"] for x in rows] == ["add-user", "add-token", "revoke-token",
                                           "set-password", "remove-user"]
    assert all(x["user"].startswith("cli:") for x in rows)
    assert PW not in r.stdout and token.split("_", 2)[2] not in r.stdout


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    for args, stdin, code, words in (
        (("add", "bob", "--role", "owner", "--password-stdin"), PW, 1, "role"),
        (("add", "bob", "--password-stdin"), "short", 1, "at least"),
        (("add", "bob", "--cidr", "10.0.0.300/8", "--password-stdin"), PW, 1, "cidr"),
        (("add", "--password-stdin"), PW, 1, "user name is needed"),
        (("token", "nobody"), "", 1, "no user"),
        (("remove", "nobody"), "", 1, "no user"),
    ):
        r = users(tmp_path, *args, stdin=stdin)
        assert r.returncode == code, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    r = users(tmp_path / "missing", "list")
    assert r.returncode == 2 and "no such output directory" in r.stderr
