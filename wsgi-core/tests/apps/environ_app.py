"""Echoes the WSGI environ so the Rust tests can check every key.

One line per key: ``hex(key) TAB type TAB hex(value)``. Native strings are
encoded as latin-1, which is exactly how PEP 3333 maps wire bytes to ``str``,
so the test sees every code point; a string that is not latin-1 (a server
bug) is sent as UTF-8 under the type ``str-not-latin1``. Other values are sent
as the hex of their ``repr``. Hex keeps the format free of quoting rules.
"""


def _hex_text(text):
    return text.encode("utf-8", "backslashreplace").hex()


def _encode_value(value):
    if type(value) is str:
        try:
            return "str", value.encode("latin-1").hex()
        except UnicodeEncodeError:
            return "str-not-latin1", _hex_text(value)
    return type(value).__name__, _hex_text(repr(value))


def _encode_key(key):
    if type(key) is str:
        return _hex_text(key)
    return _hex_text("!nonstr-key:" + repr(key))


def application(environ, start_response):
    lines = []
    for key, value in environ.items():
        kind, value_hex = _encode_value(value)
        lines.append(f"{_encode_key(key)}\t{kind}\t{value_hex}")
    file_wrapper = environ.get("wsgi.file_wrapper")
    lines.append(f"{_hex_text('@file_wrapper_callable')}\tbool\t{_hex_text(repr(callable(file_wrapper)))}")
    body = ("\n".join(lines) + "\n").encode("ascii")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=us-ascii"), ("Content-Length", str(len(body)))],
    )
    return [body]
