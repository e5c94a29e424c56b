"""Test app for wsgi-actix: reports the parts of its environ that mounting decides."""

KEYS = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "SERVER_PROTOCOL")


def application(environ, start_response):
    body = "".join(f"{key}={environ[key]}\n" for key in KEYS if key in environ).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
