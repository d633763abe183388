"""`bertdemo COMMAND ...` (also `python -m bertdemo COMMAND ...`): one entry point for every command.

    bertdemo serve              run the app (what `python app.py` does)
    bertdemo train --help       fine-tune and register a version headless (the Train tab's path)
    bertdemo users add NAME     manage accounts
    bertdemo migrate current    run Alembic commands on the configured database
    bertdemo backup create DIR  back up the database and model versions (also verify, restore)
    bertdemo review v1 v2       review a candidate version against a baseline; exit 1 if the gate fails

Each command is also a module of its own (`python -m bertdemo.cli.train`), which is what
`accelerate launch -m bertdemo.cli.train` needs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "serve": ("bertdemo.cli.serve", "run the app on http://127.0.0.1:7860 (GRADIO_SERVER_NAME/PORT choose)"),
    "train": ("bertdemo.cli.train", "fine-tune on the labels in the database and register a new version"),
    "users": ("bertdemo.cli.users", "add and list accounts"),
    "migrate": ("bertdemo.cli.migrate", "Alembic commands on the configured database (upgrade, current, ...)"),
    "backup": ("bertdemo.cli.backup", "back up the data directory while the app runs; verify; restore"),
    "review": ("bertdemo.cli.review", "review candidate vB against baseline vA: slices, flips, behaviour, the gate"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_mod, help_) in COMMANDS.items()]
    return "usage: bertdemo COMMAND [ARGS ...]\n\ncommands:\n" + "\n".join(lines) + \
        "\n\n`bertdemo COMMAND --help` tells more."


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"bertdemo: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(importlib.import_module(COMMANDS[command][0]).main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
