"""An app for `serve --processes`: ways for a worker process to die, and ways to tell workers apart.

``/pid``: answers ``PID MULTIPROCESS``. ``/segv``: reads address 0 through ctypes (SIGSEGV).
``/exit``: ``os._exit(3)``. ``/abort``: ``os.abort()`` (SIGABRT). ``/crash-later?secs=S``: sleeps
S seconds, then segfaults (a request in flight when its worker dies). ``/busy``: works in
Python until interrupted (the request timeout's ``TimeoutError``). ``/block?secs=S``: sleeps
in C, where that exception cannot reach. ``/echo``: answers the request
body. ``/stream``: five pieces, each after a short pause. ``/note?text=T``: writes T to
``wsgi.errors`` and answers.
"""

import ctypes
import os
import time
from urllib.parse import parse_qs


def _segfault():
    ctypes.string_at(0)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/segv":
        _segfault()
    elif path == "/exit":
        os._exit(3)
    elif path == "/abort":
        os.abort()
    elif path == "/crash-later":
        time.sleep(float(query.get("secs", "0.5")))
        _segfault()
    elif path == "/block":
        # Blocked in C: the timeout's TimeoutError cannot reach this thread.
        time.sleep(float(query.get("secs", "30")))
    elif path == "/busy":
        end = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(0.005)
    elif path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def pieces():
            for i in range(5):
                yield b"piece %d\n" % i
                time.sleep(0.02)

        return pieces()
    elif path == "/note":
        environ["wsgi.errors"].write(query.get("text", "") + "\n")
    body = f"{os.getpid()} {environ['wsgi.multiprocess']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
