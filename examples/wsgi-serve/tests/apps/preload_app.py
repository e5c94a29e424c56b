"""An app for `wsgi-serve --preload`: who imported it, and whether the post-fork hook ran.

Every path answers ``PID PARENT IMPORTER HOOKED VERSION``: this worker's pid, its parent's,
the pid of the process that imported this module, the pid the hook ``after_fork`` ran in
(``None`` if it did not), and ``VERSION`` (a test rewrites it to see new code load).
``/segv`` reads address 0 through ctypes (SIGSEGV); ``/slow`` answers after 0.3 s, so that
requests sent together spread over the workers. With ``PRELOAD_IMPORT_LOG`` set, each
import appends the importing pid to that file. ``failing_hook`` is a post-fork hook that
raises.
"""

import ctypes
import os
import time

VERSION = "first"

IMPORTER = os.getpid()
HOOKED = None

if os.environ.get("PRELOAD_IMPORT_LOG"):
    with open(os.environ["PRELOAD_IMPORT_LOG"], "a") as log:
        log.write(f"{IMPORTER}\n")


def after_fork():
    global HOOKED
    HOOKED = os.getpid()


def failing_hook():
    raise RuntimeError("the database is unreachable, as the test asked")


def application(environ, start_response):
    if environ["PATH_INFO"] == "/segv":
        ctypes.string_at(0)
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.3)
    body = f"{os.getpid()} {os.getppid()} {IMPORTER} {HOOKED} {VERSION}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
