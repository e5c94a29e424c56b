"""Standard-library test application for what reaches the wire and the log: framing, status
lines, bodies cut by an exception, joined request headers, hostile framing.

Routed on PATH_INFO:

    /sized      ?size=N&mode=list|gen&piece=P: N bytes with Content-Length, as a list or
                a generator of P-byte pieces (default 1000); like Werkzeug, a HEAD request
                gets an empty body (the headers still declare N); with &short=1 the body
                is half as long as declared
    /unsized    a generator without Content-Length; HEAD gets an empty list, as Werkzeug
                answers it (with ?head=gen, the generator as well)
    /status     ?line=...: that status line (URL-encoded), an empty body, no Content-Length;
                with &length=N it declares Content-Length: N; each &header=NAME:VALUE is
                sent as well
    /fail       ?after=raise|str|raise-sized: yields a first chunk, then raises, or yields a str;
                raise-sized declares a Content-Length
    /headers    the HTTP_* and CONTENT_* variables as JSON
    /digest     reads the whole body; its length as JSON
    /record     ?record=TOKEN: notes the path there (what the smuggling probes look for)
"""

import json
import os
import sys
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record  # noqa: E402


def query(environ, name, default=""):
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def is_head(environ):
    return environ["REQUEST_METHOD"] == "HEAD"


def sized(environ, start_response):
    size = int(query(environ, "size", "0"))
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(size)),
    ])
    if is_head(environ):
        return ()
    body = b"x" * (size // 2 if query(environ, "short") else size)
    if query(environ, "mode") == "gen":
        piece = int(query(environ, "piece", "1000"))

        def pieces():
            for i in range(0, len(body), piece):
                yield body[i:i + piece]
        return pieces()
    return [body]


def unsized(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if is_head(environ) and query(environ, "head") != "gen":
        return []

    def pieces():
        yield b"streamed "
        yield b"body\n"
    return pieces()


def status(environ, start_response):
    headers = [("Content-Type", "text/plain"), ("X-Status", "set")]
    length = query(environ, "length")
    if length:
        headers.append(("Content-Length", length))
    for header in parse_qs(environ.get("QUERY_STRING", "")).get("header", []):
        name, _, value = header.partition(":")
        headers.append((name, value.strip()))
    start_response(query(environ, "line", "200 OK"), headers)
    return []


def fail(environ, start_response):
    after = query(environ, "after", "raise")
    headers = [("Content-Type", "text/plain")]
    if after == "raise-sized":
        headers.append(("Content-Length", "1000"))
    start_response("200 OK", headers)

    def pieces():
        yield b"the first chunk\n"
        if after == "str":
            yield "not bytes\n"
        raise RuntimeError("wire_app fails after its first chunk")
    return pieces()


def headers(environ, start_response):
    data = {
        key: value for key, value in environ.items()
        if key.startswith(("HTTP_", "CONTENT_"))
    }
    body = json.dumps(data, sort_keys=True).encode()
    start_response("200 OK", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def digest(environ, start_response):
    stream = environ["wsgi.input"]
    length = 0
    while True:
        piece = stream.read(16 * 1024)
        if not piece:
            break
        length += len(piece)
    body = json.dumps({"length": length}).encode()
    start_response("200 OK", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def recorded(environ, start_response):
    record(environ, environ["REQUEST_METHOD"] + " " + environ.get("PATH_INFO", ""))
    body = b"recorded\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


ROUTES = {
    "/sized": sized, "/unsized": unsized, "/status": status, "/fail": fail,
    "/headers": headers, "/digest": digest, "/record": recorded,
}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""), headers)
    return handler(environ, start_response)
