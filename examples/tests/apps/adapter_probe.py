"""Standard-library test application for the behaviours both adapters must share.

Routed on PATH_INFO, so it answers the same mounted or not:

    /environ    the CGI part of the environ as JSON (any other path too)
    /echo       each request-body line upper-cased as soon as it is read
    /digest     reads the whole body in small pieces; its length and SHA-256 as JSON
    /stream     "first", then, once gate ?gate=TOKEN is open, "second"; with
                ?record=TOKEN, notes "closed" there when the server closes it
    /pattern    ?size=N bytes of i % 251, yielded 64 KiB at a time
    /fixed      a fixed body with Content-Length
    /boom       raises
"""

import hashlib
import json
import os
import sys
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record, wait_for_gate  # noqa: E402

KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI",
    "CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_ADDR", "REMOTE_PORT", "SERVER_NAME",
    "SERVER_PORT", "SERVER_PROTOCOL", "HTTP_HOST", "wsgi.url_scheme",
)


def environ_json(environ, start_response):
    data = {key: environ[key] for key in KEYS if key in environ}
    body = json.dumps(data, sort_keys=True).encode()
    start_response("200 OK", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def echo(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    stream = environ["wsgi.input"]

    def lines():
        while True:
            line = stream.readline()
            if not line:
                return
            yield line.upper()

    return lines()


def digest(environ, start_response):
    stream = environ["wsgi.input"]
    hasher = hashlib.sha256()
    length = reads = 0
    while True:
        # Small reads, so a large body arrives over many calls, as it does for real apps.
        piece = stream.read(16 * 1024)
        if not piece:
            break
        reads += 1
        length += len(piece)
        hasher.update(piece)
    body = json.dumps({"length": length, "sha256": hasher.hexdigest(), "reads": reads}).encode()
    start_response("200 OK", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


class Chunks:
    """The /stream body: an iterator with close() and no finaliser, so a "closed" record
    proves that the server called close(), not that the object was collected."""

    def __init__(self, environ):
        self.environ = environ
        self.sent = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.sent += 1
        if self.sent == 1:
            return b"first\n"
        if self.sent == 2:
            return b"second\n" if wait_for_gate(self.environ) else b"gate never opened\n"
        raise StopIteration

    def close(self):
        record(self.environ, "closed")


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Chunks(environ)


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


def fixed(environ, start_response):
    body = b"fixed length\n"
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("X-Probe", "fixed"),
    ])
    return [body]


def boom(environ, start_response):
    raise RuntimeError("adapter_probe was asked to fail")


ROUTES = {
    "/echo": echo, "/digest": digest, "/stream": stream, "/pattern": pattern, "/fixed": fixed,
    "/boom": boom,
}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""), environ_json)
    return handler(environ, start_response)
