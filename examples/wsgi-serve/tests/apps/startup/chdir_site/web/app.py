"""Imports a module from the --chdir directory (not its own), as Django projects do."""

import settings


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{settings.GREETING}\n".encode()]
