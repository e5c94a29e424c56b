"""Standard-library test app for tower and actix-web middleware in front of an application.

Routed on PATH_INFO; with ?record=TOKEN every request notes "called PATH" there, so a test
can tell a request a layer answered itself from one that reached Python:

    /environ    the request's view of itself as JSON (any other path too)
    /stream     "first", then, once gate ?gate=TOKEN is open, "second"; notes "closed"
    /pattern    ?size=N bytes of i % 251, yielded 64 KiB at a time
    /late       waits for the gate before start_response, then "late" and "later"; notes
                "started", each "yield" and "closed"
    /boom       raises
"""

import json
import os
import sys
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record, wait_for_gate  # noqa: E402

KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "HTTP_X_REQUEST_ID", "HTTP_ORIGIN",
    "HTTP_ACCEPT_ENCODING", "REMOTE_USER",
)


def environ_json(environ, start_response):
    body = json.dumps({key: environ[key] for key in KEYS if key in environ}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Closing:
    """An iterable with close() and no finaliser, so a "closed" record proves the server
    called close(), not that the object was collected."""

    def __init__(self, environ, pieces):
        self.environ = environ
        self.pieces = iter(pieces)

    def __iter__(self):
        return self

    def __next__(self):
        piece = next(self.pieces)
        record(self.environ, "yield")
        return piece() if callable(piece) else piece

    def close(self):
        record(self.environ, "closed")


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    second = lambda: b"second\n" if wait_for_gate(environ) else b"gate never opened\n"  # noqa: E731
    return Closing(environ, [b"first\n", second])


PATTERN = bytes(i % 251 for i in range(251 * 262))  # a whole number of cycles, ~64 KiB


def pattern(environ, start_response):
    size = int(parse_qs(environ.get("QUERY_STRING", "")).get("size", ["0"])[0])
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def pieces():
        left = size
        while left > 0:
            piece = PATTERN[: min(left, len(PATTERN))]
            left -= len(piece)
            yield piece

    return pieces()


def late(environ, start_response):
    wait_for_gate(environ)
    record(environ, "started")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(environ, [b"late\n", b"later\n"])


def boom(environ, start_response):
    raise RuntimeError("layers_app was asked to fail")


ROUTES = {"/stream": stream, "/pattern": pattern, "/late": late, "/boom": boom}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    record(environ, f"called {path}")
    return ROUTES.get(path, environ_json)(environ, start_response)
