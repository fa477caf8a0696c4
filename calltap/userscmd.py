"""``calltap users``: manage the dashboard's users and API tokens, read its audit log.
Every change is written to the audit log as done by the local account that ran it."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import getpass
import os
import sqlite3
import sys
import time

from calltap.accounts import AccessError, Accounts, check_scope


def _now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise AccessError("the two passwords differ")
    return first


def users(args: argparse.Namespace) -> int:
    from calltap.serve import access_path

    if not os.path.isdir(args.out):
        print(f"calltap: {args.out}: no such output directory", file=sys.stderr)
        return 2
    path = args.access or access_path(os.path.realpath(args.out))
    try:
        acc = Accounts(path)
    except (AccessError, OSError, sqlite3.Error) as exc:
        print(f"calltap: {path}: {exc}", file=sys.stderr)
        return 2
    me = "cli:" + getpass.getuser()
    try:
        return _run(acc, args, me)
    except AccessError as exc:
        print(f"calltap: users {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        acc.close()


def _run(acc: Accounts, args: argparse.Namespace, me: str) -> int:
    action, name = args.action, args.name
    if action in ("add", "remove", "password", "token", "revoke-token") and not name:
        raise AccessError("a user name is needed" if action != "revoke-token"
                          else "a token id is needed")
    if action == "add":
        scope = check_scope(args.prefix, args.cidr, args.group)
        acc.add_user(name, _password(args), args.role, scope, _now_text())
        acc.audit(_now_text(), me, "add-user", f"{name} {args.role}", "local")
        print(f"user {name} added ({args.role})")
    elif action == "remove":
        acc.remove_user(name)
        acc.audit(_now_text(), me, "remove-user", name, "local")
        print(f"user {name} removed; their sessions and tokens no longer work")
    elif action == "password":
        acc.set_password(name, _password(args))
        acc.audit(_now_text(), me, "set-password", name, "local")
        print(f"password of {name} changed; their sessions were ended")
    elif action == "token":
        scopes = [s.strip() for s in args.scope.split(",") if s.strip()]
        token = acc.new_token(name, scopes, args.days * 86400, time.time(), _now_text())
        tid = token.split("_")[1]
        acc.audit(_now_text(), me, "add-token", f"{name} token {tid} {','.join(scopes)}",
                  "local")
        print(token)
        print(f"token {tid} for {name}: send it as 'Authorization: Bearer <token>'. It is "
              "shown only now.", file=sys.stderr)
    elif action == "revoke-token":
        acc.revoke_token(name)
        acc.audit(_now_text(), me, "revoke-token", name, "local")
        print(f"token {name} revoked")
    elif action == "list":
        for u in acc.users():
            limits = " ".join([*(f"prefix={p}" for p in u["prefixes"]),
                               *(f"cidr={c}" for c in u["cidrs"]),
                               *(f"group={g}" for g in u["groups"])])
            print(f"{u['name']}\t{u['role']}\t{limits or 'all calls'}")
        for t in acc.tokens():
            state = "revoked" if t["revoked"] else "expires " + dt.datetime.fromtimestamp(
                t["expires"], dt.UTC).strftime("%Y-%m-%d")
            print(f"token {t['id']}\t{t['user']}\t{','.join(t['scopes'])}\t{state}")
    else:  # audit
        w = csv.writer(sys.stdout)
        fields = ("seq", "at", "user", "action", "target", "from", "outcome")
        w.writerow(fields)
        for row in acc.audit_all():
            w.writerow([row[f] for f in fields])
    return 0
