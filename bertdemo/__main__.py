"""`python -m bertdemo COMMAND`: the same as the installed `bertdemo` command (bertdemo/cli/main.py)."""

from bertdemo.cli.main import main

raise SystemExit(main())
