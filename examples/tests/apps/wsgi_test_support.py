"""Helpers shared by the test applications in this directory.

`wait_for_gate` lets a test prove that a response streams: the application sends a first
chunk, then waits until the test, having read that chunk, creates the gate file. A server
that buffered the response would never let the test see the first chunk, and the test
would fail on its deadline instead of hanging (the wait here is bounded too).

`record` appends lines to a file the test reads, for what the client cannot see (the
server calling `close()`, say).

`report_iterable` tells the test which object carries each response body, so it can check
that file responses went through the server's `wsgi.file_wrapper`.
"""

import os
import re
import tempfile
import time

GATE_TIMEOUT = 60.0


def gate_path(token):
    # Only plain tokens, so a request cannot make the app probe arbitrary paths.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", token or ""):
        raise ValueError(f"bad gate token {token!r}")
    return os.path.join(tempfile.gettempdir(), f"wsgi-gate-{token}")


def wait_for_gate(token):
    """Waits until the test opens gate `token`; False if it never does."""
    path = gate_path(token)
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    # Consumed here, as the test cannot know when the app has seen it.
    try:
        os.remove(path)
    except OSError:
        pass
    return True


def record(token, line):
    """Appends `line` to the record file of `token`, which the test reads."""
    with open(gate_path(token).replace("wsgi-gate-", "wsgi-record-"), "a") as f:
        f.write(line + "\n")


def report_iterable(app):
    """WSGI middleware adding `X-Wsgi-Iterable: module.Type` of the body iterable.

    The iterable is passed on untouched, so a server that recognises its own
    `wsgi.file_wrapper` objects still does. Applications that start their response
    lazily, from inside the iterable, are passed through without the header.
    """

    def wrapped(environ, start_response):
        captured = []
        returned = False

        def unsupported_write(data):
            raise RuntimeError("write() is not supported behind report_iterable")

        def capture(status, headers, exc_info=None):
            if returned:
                return start_response(status, headers, exc_info)
            captured[:] = [status, headers, exc_info]
            return unsupported_write

        result = app(environ, capture)
        returned = True
        if not captured:
            return result
        status, headers, exc_info = captured
        kind = type(result)
        headers = list(headers) + [("X-Wsgi-Iterable", f"{kind.__module__}.{kind.__qualname__}")]
        start_response(status, headers, exc_info)
        return result

    return wrapped
