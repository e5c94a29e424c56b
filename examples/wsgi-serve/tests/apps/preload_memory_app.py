"""An app for `--max-rss` with `--preload`: 80 MiB kept from its import (a model or a cache
loaded at start-up, written so that every page is resident), which the workers forked from
the template share with it. Every path answers ``PID PRIVATE``: the worker's pid and its
private memory in bytes (``Private_Clean + Private_Dirty`` of ``/proc/self/smaps_rollup``).
``/grow`` first keeps 4 MiB more for good, written: memory of the worker's own.
"""

import os

LOADED = b"x" * (80 << 20)
GROWN = []


def private_bytes():
    private = 0
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            key, _, value = line.partition(":")
            if key in ("Private_Clean", "Private_Dirty"):
                private += int(value.split()[0]) * 1024
    return private


def application(environ, start_response):
    if environ["PATH_INFO"] == "/grow":
        GROWN.append(bytearray(b"y" * (4 << 20)))
    body = f"{os.getpid()} {private_bytes()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
