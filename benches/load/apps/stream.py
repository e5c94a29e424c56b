"""stream: a generator of 100 chunks of 10,240 bytes (1 MiB), no Content-Length."""

CHUNK = b"x" * 10240
COUNT = 100


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(COUNT):
        yield CHUNK
