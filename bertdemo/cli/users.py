"""`bertdemo users add NAME [--role admin]`, `bertdemo users remove NAME` and `bertdemo users list`:
manage accounts (the password is asked for, or read from BERTDEMO_PASSWORD for scripts)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from sqlalchemy.orm import Session

from bertdemo.auth import add_user, has_users, remove_user
from bertdemo.db import accounts
from bertdemo.db.engine import init_db, make_engine
from bertdemo.db.models import ROLES
from bertdemo.errors import BadInput


def main(argv: Sequence[str] | None = None) -> int:
    from bertdemo.config import Settings

    parser = argparse.ArgumentParser(prog="bertdemo users", description="Manage bertdemo accounts.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="create a user (password asked for, or from BERTDEMO_PASSWORD)")
    add.add_argument("name", help="login name")
    add.add_argument("--role", choices=ROLES, default="annotator", help="annotator or admin")
    remove = sub.add_parser("remove", help="delete a user (their open sessions end within seconds)")
    remove.add_argument("name", help="login name")
    sub.add_parser("list", help="list users and roles")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    init_db(engine)
    if args.cmd == "add":
        password = os.environ.get("BERTDEMO_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
        try:
            add_user(engine, args.name, password, args.role)
        except BadInput as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"added {args.name} ({args.role})")
    elif args.cmd == "remove":
        try:
            remove_user(engine, args.name)
        except BadInput as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"removed {args.name}; their labels keep their name")
        if not has_users(engine):
            print("no account is left: after the next start the app has no sign-in (README, 'Sharing the link')")
    else:
        with Session(engine) as s:
            for u in accounts.list_users(s):
                print(f"{u.name}\t{u.role}\t{u.created_at:%Y-%m-%d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
