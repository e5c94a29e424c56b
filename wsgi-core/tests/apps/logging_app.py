"""Logs through Python's ``logging`` without configuring it, as many apps do."""

import logging

log = logging.getLogger("fixture.views")


def application(environ, start_response):
    marker = environ["QUERY_STRING"]
    log.warning("logged-%s", marker)
    log.info("below-the-default-level-%s", marker)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
