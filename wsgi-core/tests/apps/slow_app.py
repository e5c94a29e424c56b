"""Holds a worker thread for as long as the test wants.

``?tag=NAME`` names the request in the record file (``X-Record-File`` header):
``start NAME`` when the app begins, ``end NAME`` when it returns. With an
``X-Gate-File`` header the app waits until that file exists (at most
``?max=SECONDS``, default 30) instead of guessing a sleep time; ``?sleep=S``
sleeps a fixed time instead.
"""

import os
import time
from urllib.parse import parse_qs


def record(environ, line):
    path = environ.get("HTTP_X_RECORD_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def application(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    tag = query.get("tag", "untagged")
    record(environ, f"start {tag}")
    gate = environ.get("HTTP_X_GATE_FILE")
    if gate:
        deadline = time.monotonic() + float(query.get("max", "30"))
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        time.sleep(float(query.get("sleep", "0")))
    record(environ, f"end {tag}")
    body = f"done {tag}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
