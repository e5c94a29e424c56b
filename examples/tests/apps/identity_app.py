"""Test app for the environ bridge: reports who the Rust side says the user is.

Standard library only. The answer is JSON: the host's entries, the header a client could
send, and where the app ran (a worker process or the host), so a test can tell each apart.
"""

import json
import os

KEYS = ("REMOTE_USER", "AUTH_TYPE", "myservice.tenant", "HTTP_REMOTE_USER", "SCRIPT_NAME", "PATH_INFO")


def application(environ, start_response):
    report = {key: environ[key] for key in KEYS if key in environ}
    if "REMOTE_USER" in environ:
        # PEP 3333: bytes travel as latin-1 code points; a UTF-8 name is decoded back so.
        report["remote_user_utf8"] = environ["REMOTE_USER"].encode("latin-1").decode("utf-8", "replace")
    report["pid"] = os.getpid()
    body = json.dumps(report).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
