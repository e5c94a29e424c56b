"""A fixed number of keep-alive requests over one connection, one at a time.

    python benches/load/client.py PORT PATH N [BODY_BYTES]

Sends N requests to 127.0.0.1:PORT with the ten browser headers of floor.py (and of the
criterion benchmarks), reads each response whole and checks that it is a 200. Without
BODY_BYTES each is a GET; with it, a POST of that many bytes with Content-Length (the echo
app's request, as load/post64k.lua sends it), whose answer must be the body's length, so a
server that did not read the whole body fails. It is the load of `instructions.sh`, where
the count of requests, not a duration, must be fixed: the server's instruction count
divided by N is then a cost per request.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from floor import HEADERS  # noqa: E402  (the same request as the floor's environ)

HOST = "127.0.0.1"  # the only address this client ever connects to


def request(path, body_bytes):
    """The bytes of one request; a POST of `body_bytes` bytes unless that is None."""
    method = "GET" if body_bytes is None else "POST"
    lines = [f"{method} {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in HEADERS]
    body = b""
    if body_bytes is not None:
        lines += ["content-type: application/octet-stream", f"content-length: {body_bytes}"]
        body = b"x" * body_bytes
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def main(port, path, n, body_bytes=None):
    req = request(path, body_bytes)
    with socket.create_connection((HOST, port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        for _ in range(n):
            s.sendall(req)
            while b"\r\n\r\n" not in buf:
                more = s.recv(65536)
                if not more:
                    sys.exit("client.py: the server closed the connection")
                buf += more
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            if not lines[0].startswith(b"HTTP/1.1 200"):
                sys.exit(f"client.py: unexpected status line {lines[0]!r}")
            length = next(
                (int(line.split(b":", 1)[1]) for line in lines[1:]
                 if line.lower().startswith(b"content-length:")),
                None,
            )
            if length is None:
                sys.exit("client.py: a response without Content-Length")
            while len(buf) < length:
                more = s.recv(65536)
                if not more:
                    sys.exit("client.py: the server closed the connection mid-body")
                buf += more
            if body_bytes is not None and buf[:length] != str(body_bytes).encode():
                sys.exit(f"client.py: the echo answered {buf[:length]!r}, not {body_bytes}")
            buf = buf[length:]


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
         int(sys.argv[4]) if len(sys.argv) > 4 else None)
