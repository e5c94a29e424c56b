"""An app whose import takes ``SLOW_IMPORT_SECS`` seconds (default 3), as a large Django
project's does; every request answers the worker's pid."""

import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT_SECS", "3")))


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
