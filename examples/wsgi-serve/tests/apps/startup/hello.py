"""A plain application, plus names that are not WSGI applications."""

CONFIG = {"debug": False}


def helper():
    return "not the application"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from hello.py\n"]
