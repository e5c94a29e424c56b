"""An app that keeps parts of its requests alive after they end, as real applications do.

The garbage collector is off, so what a reference cycle holds stays held, as it does for a
long while in a worker that is idle or allocates little. ``/cycle``: puts ``start_response``
in the environ and the environ in itself (Django leaves such a cycle whenever it handles an
exception inside a request), then answers normally. ``/keep``: keeps ``start_response``,
the ``write`` it returned and ``wsgi.input`` in a global. ``/call-kept``: calls what ``/keep`` kept and
answers what each call did, one line each. Every answer starts with the worker's pid.
"""

import gc
import os

gc.disable()

_kept = {}


def _outcome(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the test reads which exception it was
        return f"{type(e).__name__}: {e}"
    return "returned"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    lines = [str(os.getpid())]
    if path == "/cycle":
        environ["start_response"] = start_response
        environ["self"] = environ
    elif path == "/keep":
        _kept["start_response"] = start_response
        _kept["input"] = environ["wsgi.input"]
    elif path == "/call-kept":
        kept_start = _kept["start_response"]
        lines.append("start_response " + _outcome(lambda: kept_start("200 OK", [])))
        lines.append("write " + _outcome(lambda: _kept["write"](b"late")))
        lines.append("read " + _outcome(lambda: _kept["input"].read()))
    body = "\n".join(lines).encode() + b"\n"
    write = start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    if path == "/keep":
        _kept["write"] = write
    return [body]
