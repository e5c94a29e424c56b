"""Reads ``wsgi.input`` in the way the query string asks and echoes what it got.

Query: ``mode`` (read, readall, read_none, readline, readlines, iter, mixed
(readline and read(n) in turn), none, upload) and ``size`` (the argument of
read/readline/readlines; absent means "call without an argument"). The response
body is the concatenation of all pieces read, so the test can compare it byte
for byte with what it sent. Headers report what a byte comparison cannot show:

* ``X-Reads``: number of non-empty pieces;
* ``X-Violations``: broken stream contracts (``read(n)`` longer than ``n``, or
  shorter than ``n`` before the end, a line with a newline in its middle, a
  non-bytes piece), or ``none``;
* ``X-Eof``: ``ok`` when every read after the end returns ``b''``;
* ``X-Content-Length``: ``repr(environ.get("CONTENT_LENGTH"))``.

``mode=upload`` appends ``started`` to the record file (``record=TOKEN``), reads until the end or an error, then appends the outcome
(``eof:N``, ``oserror:Type:N`` or ``other:Type:N``).
"""

import os
import sys
from urllib.parse import parse_qs

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import record  # noqa: E402


def _size_args(query):
    if "size" not in query:
        return ()
    raw = query["size"][0]
    return (None,) if raw == "None" else (int(raw),)


def _check_lines(pieces, size, violations):
    for index, piece in enumerate(pieces):
        if b"\n" in piece[:-1]:
            violations.append(f"newline-inside-piece-{index}")
        if size is not None and size >= 0 and len(piece) > size:
            violations.append(f"line-{index}-longer-than-{size}")
    for index, piece in enumerate(pieces[:-1]):
        truncated_by_size = size is not None and size > 0 and len(piece) == size
        if not piece.endswith(b"\n") and not truncated_by_size:
            violations.append(f"short-line-{index}-before-end")


def _read_all(stream, mode, args, violations):
    pieces = []
    size = args[0] if args else None
    if mode == "read":
        short = False
        while True:
            piece = stream.read(*args)
            if type(piece) is not bytes:
                violations.append(f"read-returned-{type(piece).__name__}")
                break
            if size is not None and size >= 0 and len(piece) > size:
                violations.append(f"read({size})-returned-{len(piece)}")
            if not piece:
                break
            if short:
                violations.append(f"read({size})-short-before-the-end")
            short = size is not None and size >= 0 and len(piece) < size
            pieces.append(piece)
    elif mode == "mixed":
        # readline() and read(n) in turn: a line leaves bytes behind that the next read(n)
        # must return first, and read(n) returns exactly n bytes until the end.
        sizes = [7, 65536, 1, 1000, 3]
        ended = False
        for turn in range(1_000_000):
            if turn % 2:
                piece = stream.readline()
            else:
                n = sizes[(turn // 2) % len(sizes)]
                piece = stream.read(n)
                if len(piece) > n:
                    violations.append(f"read({n})-returned-{len(piece)}")
            if not piece:
                break
            if ended:
                violations.append(f"data-after-a-short-read-{turn}")
            ended = turn % 2 == 0 and len(piece) < n
            pieces.append(piece)
    elif mode == "readall":
        pieces.append(stream.read())
    elif mode == "read_none":
        pieces.append(stream.read(None))
    elif mode == "readline":
        while True:
            piece = stream.readline(*args)
            if not piece:
                break
            pieces.append(piece)
        _check_lines(pieces, size, violations)
    elif mode == "readlines":
        while True:
            lines = stream.readlines(*args)
            if type(lines) is not list:
                violations.append(f"readlines-returned-{type(lines).__name__}")
                break
            if not lines:
                break
            pieces.extend(lines)
            if not args or size is None or size <= 0:
                # Without a positive hint one call must return every line.
                if stream.readlines():
                    violations.append("readlines-without-hint-left-lines")
                break
        _check_lines(pieces, None, violations)
    elif mode == "iter":
        pieces.extend(stream)
        _check_lines(pieces, None, violations)
    elif mode == "none":
        pass
    else:
        raise ValueError(f"unknown mode {mode!r}")
    for piece in pieces:
        if type(piece) is not bytes:
            violations.append(f"piece-is-{type(piece).__name__}")
    return [p for p in pieces if p]


def _eof_report(stream):
    leftovers = {
        "read(1)": stream.read(1),
        "read(8192)": stream.read(8192),
        "readline()": stream.readline(),
        "readlines()": stream.readlines(),
    }
    bad = [f"{call}={value!r}" for call, value in leftovers.items() if value not in (b"", [])]
    return "ok" if not bad else ";".join(bad)[:200]


def _upload(environ, start_response):
    stream = environ["wsgi.input"]
    total = 0
    record(environ, "started")
    try:
        while True:
            piece = stream.read(8192)
            if not piece:
                record(environ, f"eof:{total}")
                break
            total += len(piece)
    except Exception as err:  # noqa: BLE001 - the type is what the test checks
        kind = "oserror" if isinstance(err, OSError) else "other"
        record(environ, f"{kind}:{type(err).__name__}:{total}")
    body = f"read {total}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    mode = query.get("mode", ["read"])[0]
    if mode == "upload":
        return _upload(environ, start_response)
    stream = environ["wsgi.input"]
    violations = []
    pieces = _read_all(stream, mode, _size_args(query), violations)
    eof = _eof_report(stream) if mode != "none" else "skipped"
    body = b"".join(pieces)
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
            ("X-Mode", mode),
            ("X-Reads", str(len(pieces))),
            ("X-Violations", ";".join(violations)[:500] or "none"),
            ("X-Eof", eof),
            ("X-Content-Length", repr(environ.get("CONTENT_LENGTH"))),
        ],
    )
    return [body]
