"""Reports the interpreter's environment, and what a virtualenv's packages provide."""

import os
import sys


def _optional(module, attribute):
    try:
        return getattr(__import__(module), attribute)
    except ImportError as error:
        return f"ImportError: {error}"


def application(environ, start_response):
    facts = {
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "executable": sys.executable,
        "version": "%d.%d" % sys.version_info[:2],
        "package": _optional("wsgitestpkg", "VALUE"),
        "pth_module": _optional("wsgipthmod", "VALUE"),
        "pth_ran": os.environ.get("WSGI_TEST_PTH_RAN", ""),
        "user_pth_ran": os.environ.get("WSGI_TEST_USER_PTH_RAN", ""),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
    }
    body = "".join(f"{key}={value}\n" for key, value in facts.items()).encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body]
