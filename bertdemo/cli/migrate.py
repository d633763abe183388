"""`bertdemo migrate ...`: any Alembic command on the database of the environment
(BERTDEMO_DB_URL, or the SQLite file in BERTDEMO_DATA_DIR):

    bertdemo migrate upgrade head        # what every start does
    bertdemo migrate current             # the revision the database is at
    bertdemo migrate history             # every revision
    bertdemo migrate downgrade 0001      # back to a revision (base = drop everything)
    bertdemo migrate check               # do the models match the migrations?
    bertdemo migrate revision --autogenerate -m "add x"   # next numbered revision
    bertdemo migrate upgrade head --sql  # print the SQL instead of running it
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic.config import CommandLine

from bertdemo.db.migrate import _next_rev_id, alembic_config, head_revision, upgrade


def main(argv: Sequence[str] | None = None) -> int:
    from bertdemo.config import Settings
    from bertdemo.db.engine import make_engine

    cli = CommandLine(prog="bertdemo migrate")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    url = Settings.from_env().database_url
    name = options.cmd[0].__name__
    if name == "upgrade" and not options.sql:
        # the same path as an app start: adopts a pre-migration database, takes the lock
        engine = make_engine(url)
        try:
            upgrade(engine, options.revision)
        finally:
            engine.dispose()
        print(f"database at {head_revision() if options.revision == 'head' else options.revision}")
        return 0
    if name == "revision" and not getattr(options, "rev_id", None):
        options.rev_id = _next_rev_id()
    cfg = alembic_config(url=url)
    cfg.cmd_opts = options
    cli.run_cmd(cfg, options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
