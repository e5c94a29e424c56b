"""Holds a worker thread for as long as the test wants.

``?tag=NAME`` names the request in the record file (``?record=TOKEN``):
``start NAME`` when the app begins, ``end NAME`` when it returns. With a
gate (``?gate=TOKEN``) the app waits until the test opens it (at most
``?max=SECONDS``) instead of guessing a sleep time; ``?sleep=S`` sleeps a
fixed time instead.
"""

import os
import sys
import time
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import GATE_TIMEOUT, record, wait_for_gate  # noqa: E402


def application(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    tag = query.get("tag", "untagged")
    record(environ, f"start {tag}")
    if "gate" in query:
        wait_for_gate(environ, float(query.get("max", GATE_TIMEOUT)))
    else:
        time.sleep(float(query.get("sleep", "0")))
    record(environ, f"end {tag}")
    body = f"done {tag}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
