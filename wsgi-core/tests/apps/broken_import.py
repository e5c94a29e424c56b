"""Fails while being imported; the loader must report this traceback."""


def _explode():
    raise RuntimeError("fixture-import-failure-4711")


_explode()


def application(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
