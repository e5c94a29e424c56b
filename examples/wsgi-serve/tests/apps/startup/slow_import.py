"""An app whose import never finishes in time: it waits for something that does not come."""

import time

time.sleep(600)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"too late\n"]
