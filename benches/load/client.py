"""A fixed number of keep-alive GET requests over one connection, one at a time.

    python benches/load/client.py PORT PATH N

Sends N requests to 127.0.0.1:PORT with the ten browser headers of floor.py (and of the
criterion benchmarks), reads each response whole and checks that it is a 200. It is the load
of `instructions.sh`, where the count of requests, not a duration, must be fixed: the server's
instruction count divided by N is then a cost per request.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from floor import HEADERS  # noqa: E402  (the same request as the floor's environ)

HOST = "127.0.0.1"  # the only address this client ever connects to


def request(path):
    lines = [f"GET {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in HEADERS]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def main(port, path, n):
    req = request(path)
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
            buf = buf[length:]


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
