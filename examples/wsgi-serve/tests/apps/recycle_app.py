"""An app for worker replacement tests; each test copies it into a directory of its own.

Every request answers the worker's pid. ``/leak`` also keeps 1 MiB for good (an app that
leaks). At exit, the worker leaves a file ``atexit-PID`` next to this file, so a test can see
that its ``atexit`` handlers ran.
"""

import atexit
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LEAKED = []


def _at_exit():
    with open(os.path.join(HERE, "atexit-%d" % os.getpid()), "w"):
        pass


atexit.register(_at_exit)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/leak":
        LEAKED.append(b"x" * (1 << 20))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
