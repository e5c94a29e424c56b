"""Fails to compile: the error is on line 4."""


def application(environ, start_response)
    start_response("200 OK", [])
    return [b""]
