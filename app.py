"""Hugging Face Spaces entry point: build the Blocks and launch it.

Configuration comes from the environment (see README, "Configuration"); Gradio's own
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address.
"""

import logging

from bertdemo.config import Settings
from bertdemo.jobs import Services
from bertdemo.ui import build_demo
from bertdemo.users import SIGNIN_NOTICE, gradio_auth

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

services = Services.create(Settings.from_env())
services.start()  # imports the bundled data and trains version 1 in the background on a first start
demo = build_demo(services)
demo.queue(default_concurrency_limit=4)

if __name__ == "__main__":
    # Gradio refuses uploads over this itself; the app's own, smaller cap (BERTDEMO_MAX_UPLOAD_MB)
    # answers first with a clearer message
    # sign-in only when accounts exist (`python -m bertdemo.users add NAME`); else single-user local mode
    demo.launch(max_file_size=f"{max(100, 2 * services.settings.max_upload_mb):.0f}mb",
                auth=gradio_auth(services.engine), auth_message=f"bertdemo: sign in to annotate. {SIGNIN_NOTICE}")
