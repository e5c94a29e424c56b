"""An app that starts a thread while it is imported, which `--preload` must refuse: a
worker forked from the process that imported it would not have the thread."""

import threading
import time

threading.Thread(target=time.sleep, args=(3600,), name="poller", daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served"]
