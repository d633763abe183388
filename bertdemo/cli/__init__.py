"""Command-line entry points (python -m bertdemo COMMAND); nothing in the package imports cli/."""
