"""An app for what an operator reads when requests hang: the request timeout's exception and
the Python stacks in the log (``--timeout``, SIGUSR1), in-process and in worker processes.

``/retrying?secs=S``: works in Python for S seconds in a loop that catches ``Exception`` and
carries on (as a retry loop does), recording ``swallowed`` (``?record=TOKEN``) and writing it to
``wsgi.errors`` if it ever catches the timeout's ``wsgi_core.RequestTimeout``, which derives
from ``BaseException`` so that it does not; catching it by name, it records ``cleaned up``
and re-raises. ``/sleeping?secs=S``: records ``running``, then
sleeps S seconds in ``sleeping_view`` (in C: a stack report finds it there) and answers
``slept``. ``/pid``: the process id. Anything else answers ``fast``.
"""

import os
import sys
import time
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record  # noqa: E402

# Registered by the server before the application is imported, in a worker process too.
from wsgi_core import RequestTimeout  # noqa: E402


def retrying_work(environ, secs):
    end = time.monotonic() + secs
    try:
        while time.monotonic() < end:
            try:
                time.sleep(0.005)
            except Exception:
                record(environ, "swallowed")
                environ["wsgi.errors"].write("swallowed the request timeout\n")
    except RequestTimeout:
        record(environ, "cleaned up")
        raise
    return b"retried until the end"


def sleeping_view(environ, secs):
    record(environ, "running")
    time.sleep(secs)
    return b"slept"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/retrying":
        body = retrying_work(environ, float(query.get("secs", "60")))
    elif path == "/sleeping":
        body = sleeping_view(environ, float(query.get("secs", "3")))
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"fast"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
