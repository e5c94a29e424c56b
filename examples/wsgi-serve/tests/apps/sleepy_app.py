"""An app for the elastic pool (`wsgi-serve --processes MIN..MAX`): every request sleeps,
holding its thread, then answers the pid of the worker process that ran it.

``/?secs=S`` sleeps S seconds (default 0.2); ``/pid`` answers at once; ``/exit`` ends the
worker process (``os._exit(3)``), a crash.
"""

import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    if environ["PATH_INFO"] == "/exit":
        os._exit(3)
    if environ["PATH_INFO"] != "/pid":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(float(query.get("secs", ["0.2"])[0]))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
