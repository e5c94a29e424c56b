"""What the Python test apps of every crate share; the Python twin of `src/gate.rs`.

A test names a gate or a record file by a token in the request's query string
(`gate=TOKEN`, `record=TOKEN`), which maps to a file in the temporary directory, the same
file the Rust side (`test_support::gate`) creates or reads.

`wait_for_gate(environ)` lets a test prove that a response streams: the application sends a
first chunk, then waits until the test, having read that chunk, creates the gate file. A
server that buffered the response would never let the test see the first chunk, and the
test would fail on its deadline instead of hanging (the wait here is bounded too). The app
leaves the file alone, so one gate can release several requests; the test removes it.

`record(environ, line)` appends a line to the record file, for what the client cannot see
(the server calling `close()`, say).

`report_iterable` tells the test which object carries each response body, so it can check
that file responses went through the server's `wsgi.file_wrapper`.

The test apps put this directory on `sys.path` themselves, so that they also run outside
the tests' harness (under `serve`, say).
"""

import os
import re
import tempfile
import time
from urllib.parse import parse_qs

# As long as the Rust side's DEADLINE: a test that passes never waits for it.
GATE_TIMEOUT = 60.0


def token(environ, name):
    """The token `name=TOKEN` of the query string, or None."""
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    if not values:
        return None
    value = values[0]
    # Only plain tokens, so a request cannot make the app probe arbitrary paths.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", value):
        raise ValueError(f"bad {name} token {value!r}")
    return value


def _path(kind, value):
    return os.path.join(tempfile.gettempdir(), f"wsgi-{kind}-{value}")


def wait_for_gate(environ, timeout=GATE_TIMEOUT):
    """Waits until the test opens the request's gate: True then, False if it never does
    within `timeout` seconds. A request without a gate does not wait."""
    value = token(environ, "gate")
    if value is None:
        return True
    path = _path("gate", value)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def record(environ, line):
    """Appends `line` to the request's record file; nothing without one."""
    value = token(environ, "record")
    if value is not None:
        with open(_path("record", value), "a", encoding="utf-8") as out:
            out.write(line + "\n")


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
