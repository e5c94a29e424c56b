"""Misbehaving views for the operational limits (timeouts, queue wait, slow uploads).

``/busy?secs=S``: a view that keeps working for S seconds in Python (so an injected
``wsgi_core.RequestTimeout`` can stop it); records ``interrupted`` and ``closed`` in the
record file (``?record=TOKEN``). ``/retrying?secs=S``: works the same way in a loop that
catches ``Exception`` and carries on, recording ``swallowed`` if it ever catches the timeout's
exception (which derives from ``BaseException`` so that it does not). ``/read``: reads the whole request body. ``/fast``: answers
at once.
"""

import os
import sys
import time
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record  # noqa: E402

# The engine registers it before the application is imported.
from wsgi_core import RequestTimeout  # noqa: E402


class Busy:
    def __init__(self, environ, secs):
        self.environ = environ
        self.secs = secs

    def __iter__(self):
        end = time.monotonic() + self.secs
        try:
            while time.monotonic() < end:
                time.sleep(0.005)
        except RequestTimeout:
            record(self.environ, "interrupted")
            raise
        yield b"finished"

    def close(self):
        record(self.environ, "closed")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/busy":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Busy(environ, float(query.get("secs", "30")))
    if path == "/retrying":
        end = time.monotonic() + float(query.get("secs", "30"))
        while time.monotonic() < end:
            try:
                time.sleep(0.005)
            except Exception:
                record(environ, "swallowed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"retried until the end"]
    if path == "/read":
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % len(data)]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fast"]
