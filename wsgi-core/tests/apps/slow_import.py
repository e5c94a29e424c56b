"""Slow to import, so that engines built at the same time overlap while loading it."""

import time

time.sleep(0.5)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
