"""Response behaviours selected by PATH_INFO, one per spec point the tests check.

What the fixtures understand besides their own query parameters:

* ``?record=TOKEN``: a file the app appends one line per event to (``close``,
  ``end``, ``p`` per produced chunk, ...). The Rust test reads it to see what
  happened inside Python, e.g. that ``close()`` ran exactly once.
* ``?gate=TOKEN``: a file the app waits for before continuing. The test creates
  it once it has observed what it wanted (e.g. the first chunk), which keeps
  the streaming tests free of timing guesses.
* the ``X-File`` header: the real file that ``/file`` serves through
  ``wsgi.file_wrapper``.
"""

import io
import os
import sys
import time
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record, wait_for_gate  # noqa: E402

CT = ("Content-Type", "text/plain")


def query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


class Tracked:
    """An iterable that records each ``close()`` call, then closes what it wraps."""

    def __init__(self, environ, inner):
        self.environ = environ
        self.inner = iter(inner)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.inner)

    def close(self):
        record(self.environ, "close")
        inner_close = getattr(self.inner, "close", None)
        if inner_close is not None:
            inner_close()


class TrackedFile(io.FileIO):
    """A real file (it has a ``fileno``) whose close is recorded."""

    def __init__(self, path, environ):
        super().__init__(path, "rb")
        self.environ = environ

    def close(self):
        if not self.closed:
            record(self.environ, "file-close")
        super().close()


def hello(environ, start_response):
    start_response("200 OK", [CT])
    return [b"hello"]


def as_tuple(environ, start_response):
    start_response("200 OK", [CT])
    return (b"ab", b"cd")


def gate(environ, start_response):
    start_response("200 OK", [CT])

    def body():
        yield b"first"
        yield b"second" if wait_for_gate(environ) else b"gate-timeout"

    return Tracked(environ, body())


def write_then_iterable(environ, start_response):
    write = start_response("200 OK", [CT])
    write(b"from-write;")
    write(b"")
    write(b"again;")
    return [b"from-iter"]


def exc_info_before(environ, start_response):
    start_response("200 OK", [CT, ("X-Original", "yes")])
    try:
        raise ValueError("replace the response")
    except ValueError:
        start_response("418 Replaced", [CT, ("X-Replaced", "yes")], sys.exc_info())
    return [b"replaced"]


def second_call(environ, start_response):
    start_response("200 OK", [CT])
    try:
        start_response("201 Again", [CT])
    except Exception as err:  # noqa: BLE001 - any exception type is acceptable
        return [f"raised:{type(err).__name__}".encode()]
    return [b"accepted"]


def exc_info_after(environ, start_response):
    start_response("200 OK", [CT])

    def body():
        yield b"part1"
        try:
            raise ValueError("mid-stream")
        except ValueError as err:
            try:
                start_response("500 Too Late", [CT], sys.exc_info())
            except ValueError as again:
                record(environ, f"reraised:{again is err}")
                raise
            record(environ, "not-reraised")
        yield b"part2-must-not-be-sent"

    return Tracked(environ, body())


HOP_BY_HOP = {
    "hop_connection": ("Connection", "close"),
    "hop_keep_alive": ("Keep-Alive", "timeout=5"),
    "hop_proxy_connection": ("Proxy-Connection", "keep-alive"),
    "hop_te": ("TE", "trailers"),
    "hop_transfer_encoding": ("Transfer-Encoding", "chunked"),
    "hop_upgrade": ("upgrade", "websocket"),
}

BAD_CALLS = {
    "status_no_reason": ("200", [CT]),
    "status_not_numeric": ("abc OK", [CT]),
    "status_two_digits": ("20 OK", [CT]),
    "status_too_low": ("099 Low", [CT]),
    "status_too_high": ("600 High", [CT]),
    "status_bytes": (b"200 OK", [CT]),
    "status_crlf": ("200 OK\r\nX-Injected: 1", [CT]),
    "headers_tuple": ("200 OK", (CT,)),
    "headers_dict": ("200 OK", {"Content-Type": "text/plain"}),
    "headers_str": ("200 OK", "Content-Type: text/plain"),
    "header_short": ("200 OK", [CT, ("X-A",)]),
    "header_long": ("200 OK", [CT, ("X-A", "1", "2")]),
    "header_value_int": ("200 OK", [CT, ("X-A", 1)]),
    "header_name_bytes": ("200 OK", [CT, (b"X-A", "1")]),
    "header_value_bytes": ("200 OK", [CT, ("X-A", b"1")]),
    "header_name_space": ("200 OK", [CT, ("X A", "1")]),
    "header_name_colon": ("200 OK", [CT, ("X:A", "1")]),
    "header_name_empty": ("200 OK", [CT, ("", "1")]),
    "header_name_non_ascii": ("200 OK", [CT, ("X-\xe9", "1")]),
    "value_crlf": ("200 OK", [CT, ("X-A", "a\r\nX-Injected: 1")]),
    "value_lf": ("200 OK", [CT, ("X-A", "a\nX-Injected: 1")]),
    "value_cr": ("200 OK", [CT, ("X-A", "a\rX-Injected: 1")]),
    "value_not_latin1": ("200 OK", [CT, ("X-A", "\u20ac")]),
}
BAD_CALLS.update({name: ("200 OK", [CT, header]) for name, header in HOP_BY_HOP.items()})

GOOD_CALLS = {
    "ok_tab": ("200 OK", [CT, ("X-Tab", "a\tb")]),
    "ok_latin1": ("200 OK", [CT, ("X-Latin", "caf\xe9")]),
    "ok_reason_spaces": ("299 Custom Reason Here", [CT]),
    # RFC 2616 called these hop-by-hop; RFC 9110 does not (see response.rs).
    "ok_proxy_authenticate": ("407 Proxy Authentication Required", [
        CT, ("Proxy-Authenticate", 'Basic realm="gateway"'),
        ("Proxy-Authorization", "Basic eDp5"), ("Trailer", "X-A"),
    ]),
}


def start_response_checks(environ, start_response):
    """Calls start_response with one argument set; reports whether it raised."""
    case = query(environ).get("case", "")
    status, headers = {**BAD_CALLS, **GOOD_CALLS}[case]
    try:
        start_response(status, headers)
    except Exception as err:  # noqa: BLE001 - any exception type is acceptable
        # A rejected call must leave start_response uncalled, so a corrected
        # call is still allowed.
        start_response("200 OK", [CT])
        return [f"raised:{type(err).__name__}".encode()]
    return [b"accepted"]


def lazy(environ, start_response):
    def body():
        start_response("200 OK", [CT, ("X-Lazy", "yes")])
        yield b"lazy-"
        yield b"body"

    return body()


def lazy_empty(environ, start_response):
    def body():
        start_response("200 OK", [CT, ("X-Lazy", "empty")])
        return
        yield b""  # unreachable; makes this a generator

    return body()


def raise_before(environ, start_response):
    marker = query(environ).get("marker", "none")
    raise RuntimeError(f"boom-before-start-{marker}")


def raise_after_start(environ, start_response):
    start_response("200 OK", [CT])
    raise RuntimeError("boom-after-start")


def raise_first_chunk(environ, start_response):
    start_response("200 OK", [CT])

    def body():
        raise RuntimeError("boom-in-first-chunk")
        yield b""  # unreachable; makes this a generator

    return Tracked(environ, body())


def raise_midstream(environ, start_response):
    start_response("200 OK", [CT])

    def body():
        yield b"x" * 1000
        raise RuntimeError("boom-mid-stream")

    return Tracked(environ, body())


def raise_after_gate(environ, start_response):
    """Fails only after the client has seen the first chunk (it opens the gate)."""
    start_response("200 OK", [CT])

    def body():
        yield b"x" * 1000
        wait_for_gate(environ)
        raise RuntimeError("boom-after-gate")

    return Tracked(environ, body())


def str_chunk(environ, start_response):
    start_response("200 OK", [CT])
    return ["a native str is not a body chunk"]


def str_chunk_generator(environ, start_response):
    start_response("200 OK", [CT])

    def body():
        yield "a native str is not a body chunk"

    return body()


def none_result(environ, start_response):
    start_response("200 OK", [CT])
    return None


def no_start_response(environ, start_response):
    return [b"start_response was never called"]


def content_length(environ, start_response):
    q = query(environ)
    declared, send = int(q["declared"]), int(q["send"])
    start_response("200 OK", [CT, ("Content-Length", str(declared))])
    payload = bytes(48 + i % 10 for i in range(send))

    def body():
        half = send // 2
        yield payload[:half]
        wait_for_gate(environ)
        yield payload[half:]
        record(environ, "end")

    return Tracked(environ, body())


def status(environ, start_response):
    code = query(environ).get("code", "200")
    reasons = {"204": "No Content", "304": "Not Modified", "200": "OK"}
    start_response(f"{code} {reasons[code]}", [CT])
    return [b"this body must never reach the client"]


def cookies(environ, start_response):
    start_response(
        "200 OK",
        [CT, ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"), ("X-Multi", "one"), ("X-Multi", "two")],
    )
    return [b"cookies"]


def tiny(environ, start_response):
    count = int(query(environ).get("n", "1000"))
    start_response("200 OK", [CT])

    def body():
        for i in range(count):
            yield bytes([97 + i % 26])

    return Tracked(environ, body())


def tracked(environ, start_response):
    count = int(query(environ).get("n", "3"))
    start_response("200 OK", [CT])

    def body():
        for i in range(count):
            yield f"chunk{i};".encode()
        record(environ, "end")

    return Tracked(environ, body())


def big(environ, start_response):
    """``chunks`` chunks of ``size`` bytes, recording a ``p`` line per chunk produced."""
    q = query(environ)
    chunks = int(q.get("chunks", "1024"))
    size = int(q.get("size", "65536"))
    pause = float(q.get("sleep", "0"))
    start_response("200 OK", [CT])
    chunk = b"z" * size

    def body():
        for _ in range(chunks):
            record(environ, "p")
            yield chunk
            if pause:
                time.sleep(pause)
        record(environ, "end")

    return Tracked(environ, body())


def file_response(environ, start_response):
    q = query(environ)
    handle = TrackedFile(environ["HTTP_X_FILE"], environ)
    handle.seek(int(q.get("offset", "0")))
    headers = [CT]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    start_response("200 OK", headers)
    wrapper = environ["wsgi.file_wrapper"]
    if "blksize" in q:
        return wrapper(handle, int(q["blksize"]))
    return wrapper(handle)


class RecordingBytesIO(io.BytesIO):
    def __init__(self, data, environ):
        super().__init__(data)
        self.environ = environ
        self.read_sizes = []

    def read(self, size=-1):
        self.read_sizes.append(size)
        return super().read(size)

    def close(self):
        if not self.closed:
            sizes = sorted(set(self.read_sizes))
            record(self.environ, f"bytesio-close sizes={sizes}")
        super().close()


def bytesio_response(environ, start_response):
    q = query(environ)
    data = bytes(i % 251 for i in range(int(q.get("size", "1000"))))
    start_response("200 OK", [CT])
    return environ["wsgi.file_wrapper"](RecordingBytesIO(data, environ), int(q.get("blksize", "7")))


def errors(environ, start_response):
    marker = query(environ).get("marker", "none")
    stream = environ["wsgi.errors"]
    stream.write(f"errors-write-{marker}\n")
    stream.writelines([f"errors-writelines-{marker}-a\n", f"errors-writelines-{marker}-b\n"])
    stream.flush()
    start_response("200 OK", [CT])
    return [b"logged"]


ROUTES = {
    "/hello": hello,
    "/tuple": as_tuple,
    "/gate": gate,
    "/write": write_then_iterable,
    "/exc_info_before": exc_info_before,
    "/second_call": second_call,
    "/exc_info_after": exc_info_after,
    "/start_response": start_response_checks,
    "/lazy": lazy,
    "/lazy_empty": lazy_empty,
    "/raise_before": raise_before,
    "/raise_after_start": raise_after_start,
    "/raise_first_chunk": raise_first_chunk,
    "/raise_midstream": raise_midstream,
    "/raise_after_gate": raise_after_gate,
    "/str_chunk": str_chunk,
    "/str_chunk_generator": str_chunk_generator,
    "/none": none_result,
    "/no_start_response": no_start_response,
    "/content_length": content_length,
    "/status": status,
    "/cookies": cookies,
    "/tiny": tiny,
    "/tracked": tracked,
    "/big": big,
    "/file": file_response,
    "/bytesio": bytesio_response,
    "/errors": errors,
}


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is None:
        body = f"no route {environ.get('PATH_INFO', '')!r}".encode("utf-8", "backslashreplace")
        start_response("404 Not Found", [CT])
        return [body]
    return route(environ, start_response)
