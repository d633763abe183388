"""`bertdemo serve`: run the app, as `python app.py` does (settings -> services -> build_demo -> launch)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertdemo serve", description="Run the bertdemo app. Configuration comes "
                                "from BERTDEMO_* variables (README, 'Configuration').")
    p.add_argument("--host", default=None, help="address to listen on (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bertdemo.config import Settings
    from bertdemo.memory import limit_malloc_arenas

    settings = Settings.from_env()
    if args.host:  # where it listens decides whether the link is shared (Settings.shared_link)
        settings = settings.with_(server_name=args.host)
    limit_malloc_arenas(settings.malloc_arenas)  # before the imports below start threads
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bertdemo.services import Services
    from bertdemo.ui.demo import build_demo, launch_options

    services = Services.create(settings)
    services.start()
    build_demo(services).launch(server_name=args.host, server_port=args.port, **launch_options(services))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
