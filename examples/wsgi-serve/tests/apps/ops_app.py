"""An app for the operational options of `wsgi-serve`.

``/busy``: keeps working in Python until interrupted (the request timeout's
``wsgi_core.RequestTimeout``). ``/slow?secs=S&record=TOKEN``: records ``running``, takes S seconds, then
answers (an in-flight request during shutdown). ``/where``: answers
``SCRIPT_NAME|PATH_INFO|REMOTE_ADDR|wsgi.url_scheme``, with ``-`` for a missing
``REMOTE_ADDR`` (a UNIX socket's peer has none). ``/note?text=T``: writes T to
``wsgi.errors`` (a WARN line in the log). ``/env?name=N``: the process's environment
variable N, or ``<unset>``. Anything else answers at once.
"""

import os
import sys
import time
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record  # noqa: E402


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/busy":
        end = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(0.005)
    elif path == "/slow":
        record(environ, "running")
        time.sleep(float(query.get("secs", "1")))
    elif path == "/where":
        keys = ("SCRIPT_NAME", "PATH_INFO", "REMOTE_ADDR", "wsgi.url_scheme")
        body = "|".join(environ.get(k, "-") for k in keys).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    elif path == "/env":
        body = os.environ.get(query.get("name", ""), "<unset>").encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    elif path == "/note":
        environ["wsgi.errors"].write(query.get("text", "") + "\n")
    body = f"done {path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
