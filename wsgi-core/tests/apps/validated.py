"""The fixture apps wrapped in ``wsgiref.validate.validator``.

Select one with ``validated.py:validated_environ`` (``_input``, ``_response``,
``_slow``). A server bug that the validator detects inside a request becomes an
``AssertionError``, hence a 500 the test sees. Two kinds of violation surface
outside any request, so they are collected here instead:

* an iterable dropped without ``close()``: the validator asserts in ``__del__``,
  which Python routes to ``sys.unraisablehook``;
* ``WSGIWarning``s (e.g. no ``QUERY_STRING``), which only warn.

``GET /__failures`` on any validated app returns everything collected so far,
one per line (empty body: nothing went wrong).
"""

import gc
import os
import sys
import threading
import warnings
from wsgiref.validate import WSGIWarning, validator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import environ_app  # noqa: E402
import input_app  # noqa: E402
import response_app  # noqa: E402
import slow_app  # noqa: E402

# Kept on ``sys`` so that every copy of this module the engine may load (one per
# Engine) shares one list and one hook.
if not hasattr(sys, "_wsgi_test_failures"):
    sys._wsgi_test_failures = []
    sys._wsgi_test_failures_lock = threading.Lock()

    def _unraisable(info):
        with sys._wsgi_test_failures_lock:
            sys._wsgi_test_failures.append(
                f"unraisable {info.exc_type.__name__}: {info.exc_value} ({info.err_msg}: {info.object!r})"
            )

    def _show_warning(message, category, filename, lineno, file=None, line=None):
        with sys._wsgi_test_failures_lock:
            sys._wsgi_test_failures.append(f"warning {category.__name__}: {message}")

    sys.unraisablehook = _unraisable
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", WSGIWarning)


def _failures(environ, start_response):
    gc.collect()
    with sys._wsgi_test_failures_lock:
        body = "\n".join(sys._wsgi_test_failures).encode("utf-8", "backslashreplace")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _wrap(app):
    checked = validator(app)

    def application(environ, start_response):
        if environ.get("PATH_INFO") == "/__failures":
            return _failures(environ, start_response)
        return checked(environ, start_response)

    return application


validated_environ = _wrap(environ_app.application)
validated_input = _wrap(input_app.application)
validated_response = _wrap(response_app.application)
validated_slow = _wrap(slow_app.application)
