"""An app for request-body buffering: what the app sees of an upload, and when.

Routed on PATH_INFO:

    /upload   ?mark=PATH&spool=DIR: creates PATH when the app starts, counts the open file
              descriptors of this process that point into DIR (the spooled body's), then
              reads the whole body; answers "LEN SHA256 SPOOL_FDS"
    /first    ?mark=PATH: reads the first 10 bytes of the body, writes them to PATH, then
              reads the rest; answers "LEN" (proves the body streamed)
    /hello    answers "hello" at once
"""

import hashlib
import os
from urllib.parse import parse_qs


def fds_into(directory):
    """Open descriptors of this process whose target lies in `directory` (Linux)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(directory.rstrip("/") + "/"):
            count += 1
    return count


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    body_in = environ["wsgi.input"]
    if path == "/upload":
        open(query["mark"], "w").close()
        spool_fds = fds_into(query["spool"]) if "spool" in query else 0
        body = body_in.read()
        text = f"{len(body)} {hashlib.sha256(body).hexdigest()} {spool_fds}"
    elif path == "/first":
        first = body_in.read(10)
        with open(query["mark"], "wb") as f:
            f.write(first)
        text = str(len(first) + len(body_in.read()))
    else:
        text = "hello"
    out = text.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
