"""`bertdemo backup create DEST | verify SRC | restore SRC [--force]`: back up the data directory
(database + model versions, with a manifest of checksums) while the app runs, check a backup, and
restore one (with the app stopped). See bertdemo/backup.py and docs/operations.md."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertdemo backup", description="Back up, verify and restore the data directory "
                                "(BERTDEMO_DATA_DIR, BERTDEMO_DB_URL choose it).")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="copy the database (SQLite online backup) and every registered version")
    c.add_argument("dest", help="a new (or empty) folder outside the data directory")
    v = sub.add_parser("verify", help="check a backup's files, checksums and database without restoring it")
    v.add_argument("src", help="the backup folder")
    r = sub.add_parser("restore", help="verify, then restore into the data directory (stop the app first)")
    r.add_argument("src", help="the backup folder")
    r.add_argument("--force", action="store_true", help="move an existing data directory aside and restore anyway")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bertdemo import backup
    from bertdemo.config import Settings
    from bertdemo.errors import UserError

    settings = Settings.from_env()
    try:
        if args.cmd == "create":
            report = backup.create(settings, args.dest)
            print(report.summary())
            for w in report.warnings:
                print(f"warning: {w}", file=sys.stderr)
        elif args.cmd == "verify":
            check = backup.verify(args.src)
            if not check.ok:
                for problem in check.problems:
                    print(f"problem: {problem}", file=sys.stderr)
                print(f"{check.path}: {len(check.problems)} problem(s); do not restore it.", file=sys.stderr)
                return 1
            print(f"{check.path}: ok ({check.checked} files match the manifest).")
        else:
            print(backup.restore(args.src, settings, force=args.force))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
