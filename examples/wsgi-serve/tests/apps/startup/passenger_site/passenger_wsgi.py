"""Passenger's convention: a directory's passenger_wsgi.py defines `application`."""

import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    here = os.path.basename(os.path.dirname(os.path.abspath(__file__)))
    return [f"passenger application in {here}\n".encode()]
