"""Imports a dependency that is not installed."""

import wsgi_startup_missing_dependency  # noqa: F401


def application(environ, start_response):
    start_response("200 OK", [])
    return [b""]
