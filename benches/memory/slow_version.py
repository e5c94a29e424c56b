"""slow_version: an app that takes 2 s to import and answers its VERSION.

benches/memory/preload.py copies it into a directory of its own, rewrites VERSION and touches
tmp/restart.txt, then times how long until the new VERSION answers.
"""

import time

VERSION = "0"

time.sleep(2)


def application(environ, start_response):
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
