"""Hugging Face Spaces entry point: settings -> services -> build_demo -> launch.

Configuration comes from the environment (see README, "Configuration"); Gradio's own
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address. `bertdemo serve` does the same.
"""

import logging

from bertdemo.config import Settings
from bertdemo.memory import limit_malloc_arenas

settings = Settings.from_env()
limit_malloc_arenas(settings.malloc_arenas)  # before torch, OpenVINO and Gradio start threads (bertdemo/memory.py)

from bertdemo.services import Services
from bertdemo.ui.demo import build_demo, launch_options

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

services = Services.create(settings)
services.start()  # imports the bundled data and trains version 1 in the background on a first start
demo = build_demo(services)

if __name__ == "__main__":
    demo.launch(**launch_options(services))
