"""Deliberately invalid Python: the loader must name this file in its error."""

def application(environ, start_response)
    return [b""]
