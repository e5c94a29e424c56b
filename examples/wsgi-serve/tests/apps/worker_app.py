"""An app for `wsgi-serve --processes`: ways for a worker process to die, and ways to tell workers apart.

``/pid``: answers ``PID MULTIPROCESS``. ``/segv``: reads address 0 through ctypes (SIGSEGV).
``/exit``: ``os._exit(3)``. ``/abort``: ``os.abort()`` (SIGABRT). ``/crash-later?secs=S``: sleeps
S seconds, then segfaults (a request in flight when its worker dies). ``/busy``: works in
Python until interrupted (the request timeout's ``wsgi_core.RequestTimeout``). ``/block?secs=S``: sleeps
in C, where that exception cannot reach. ``/echo``: answers the request
body. ``/stream``: five pieces, each after a short pause. ``/many?n=N&record=R``: N chunks
of 64 KiB, recording ``yielded I`` every 16th and ``yielded all`` at the end. ``/note?text=T``: writes T to
``wsgi.errors`` and answers.

Bodies with a ``close()`` of their own, for what happens after a complete response
(``&raise=1``: the body raises before its first chunk, so the response is the server's 500;
``&file=1``: the body is this file through ``wsgi.file_wrapper``):
``/slow-close?gate=G&record=R``: close() records ``closing``, waits for the test's gate, then
records ``closed`` (or ``gate timed out``). ``/die-in-close?gate=G``: close() waits for the
gate, then ends the worker process (``os._exit(7)``). ``/hold?gate=G&record=R``: records
``holding`` and answers once the gate opens (a thread kept busy).
"""

import ctypes
import os
import sys
import time
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record, wait_for_gate  # noqa: E402

BODY = b"complete body"


def _segfault():
    ctypes.string_at(0)


class _Body:
    """Two chunks of ``BODY``, and a close() that calls ``closing``."""

    def __init__(self, closing, fail):
        self._closing = closing
        self._fail = fail

    def __iter__(self):
        if self._fail:
            raise RuntimeError("the body failed before its first chunk, as asked")
        return iter([BODY[:9], BODY[9:]])

    def close(self):
        self._closing()


class _File:
    """This file, for ``wsgi.file_wrapper``, with a close() that also calls ``closing``."""

    def __init__(self, closing):
        self._file = open(__file__, "rb")
        self._closing = closing

    def fileno(self):
        return self._file.fileno()

    def tell(self):
        return self._file.tell()

    def read(self, size=-1):
        return self._file.read(size)

    def close(self):
        self._file.close()
        self._closing()


def _closing_slowly(environ):
    record(environ, "closing")
    record(environ, "closed" if wait_for_gate(environ) else "gate timed out")


def _dying(environ):
    wait_for_gate(environ)
    os._exit(7)


def _body_with_close(environ, query, start_response, closing):
    if query.get("file"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](_File(closing))
    # No Content-Length: the body is chunked, and the client has all of it only with its
    # last chunk, which the response's end makes.
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _Body(closing, fail=bool(query.get("raise")))


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/slow-close":
        return _body_with_close(environ, query, start_response, lambda: _closing_slowly(environ))
    if path == "/die-in-close":
        return _body_with_close(environ, query, start_response, lambda: _dying(environ))
    if path == "/hold":
        record(environ, "holding")
        wait_for_gate(environ)
    elif path == "/segv":
        _segfault()
    elif path == "/exit":
        os._exit(3)
    elif path == "/abort":
        os.abort()
    elif path == "/crash-later":
        time.sleep(float(query.get("secs", "0.5")))
        _segfault()
    elif path == "/block":
        # Blocked in C: the timeout's RequestTimeout cannot reach this thread.
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
    elif path == "/many":
        # A large streamed body, recording its progress: a slow client must stall it.
        count = int(query.get("n", "1000"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def chunks():
            for i in range(count):
                if i % 16 == 0:
                    record(environ, "yielded %d" % i)
                yield bytes([i % 256]) * 65536
            record(environ, "yielded all")

        return chunks()
    elif path == "/note":
        environ["wsgi.errors"].write(query.get("text", "") + "\n")
    body = f"{os.getpid()} {environ['wsgi.multiprocess']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
