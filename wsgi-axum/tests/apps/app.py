"""Test app for wsgi-axum: reports its environ, echoes streamed lines, or fails on demand.

The query string picks the behaviour so that any path (mounted or not) can use any of them.
"""

KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI",
    "REMOTE_ADDR", "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
    "wsgi.url_scheme",
)


def environ_report(environ, start_response):
    lines = []
    for key in KEYS:
        if key in environ:
            lines.append(f"{key}={environ[key]}\n")
    body = "".join(lines).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def echo_lines(environ, start_response):
    """Answers each request-body line as soon as it arrives, so the client can only send
    the next line after it has seen the answer to the previous one."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    stream = environ["wsgi.input"]

    def generate():
        while True:
            line = stream.readline()
            if not line:
                return
            yield line.upper()

    return generate()


def boom(environ, start_response):
    raise RuntimeError("the test asked for an exception")


def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    if query == "echo":
        return echo_lines(environ, start_response)
    if query == "boom":
        return boom(environ, start_response)
    return environ_report(environ, start_response)
