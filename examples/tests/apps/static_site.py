"""WhiteNoise in front of a plain WSGI app, for the framework tests (examples/tests/micro.rs).

Files under ./static/ are served at /static/ by WhiteNoise; everything else reaches the
app behind it. `report_iterable` shows which object carries each body.
"""

import os
import sys

from whitenoise import WhiteNoise

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import report_iterable  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def fallback(environ, start_response):
    body = b"not a static file\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = report_iterable(
    WhiteNoise(fallback, root=os.path.join(HERE, "static"), prefix="static/", max_age=3600)
)
