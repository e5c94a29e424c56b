"""An app that needs a lot of memory just to start: 64 MiB kept from its import (a model or a
cache loaded at start-up), written so that every page is resident. Every request answers the
worker's pid.
"""

import os

LOADED = b"x" * (64 << 20)


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
