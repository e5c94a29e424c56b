"""An app for request-body buffering: what the app sees of an upload, and when.

Routed on PATH_INFO:

    /upload   ?record=TOKEN&spool=DIR: records "started" when the app starts, counts the
              open file descriptors of this process that point into DIR (the spooled
              body's), then reads the whole body; answers "LEN SHA256 SPOOL_FDS"
    /first    ?record=TOKEN: reads the first 10 bytes of the body, records them ("first
              HEX"), then reads the rest; answers "LEN" (proves the body streamed)
    /hello    answers "hello" at once
"""

import hashlib
import os
import sys
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record  # noqa: E402


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
        record(environ, "started")
        spool_fds = fds_into(query["spool"]) if "spool" in query else 0
        body = body_in.read()
        text = f"{len(body)} {hashlib.sha256(body).hexdigest()} {spool_fds}"
    elif path == "/first":
        first = body_in.read(10)
        record(environ, f"first {first.hex()}")
        text = str(len(first) + len(body_in.read()))
    else:
        text = "hello"
    out = text.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
