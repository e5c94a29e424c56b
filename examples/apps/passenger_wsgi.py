"""A small WSGI application for trying out `serve` (standard library only).

    GET  /          a hello page with links
    POST /echo      answers the request body back, with its length
    GET  /stream    a response streamed line by line, one line every 0.2 s (?n=COUNT)
    GET  /environ   the CGI part of the WSGI environ, as plain text
"""

import html
import time
from urllib.parse import parse_qs


def hello(environ, start_response):
    script = html.escape(environ.get("SCRIPT_NAME", ""))
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Hello from WSGI</title></head>
<body>
<h1>Hello from Python, served by Rust</h1>
<ul>
  <li><a href="{script}/stream?n=10">a streamed response</a></li>
  <li><a href="{script}/environ">the environ</a></li>
</ul>
<form method="post" action="{script}/echo">
  <input name="message" value="hello"> <button>echo</button>
</form>
</body></html>
""".encode("utf-8")
    start_response("200 OK", [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def echo(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Type", "text/plain")])
        return [b"POST something to /echo\n"]
    data = environ["wsgi.input"].read()
    content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
    start_response("200 OK", [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("X-Echo-Length", str(len(data))),
    ])
    return [data]


def stream(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        count = max(0, min(1000, int(query.get("n", ["5"])[0])))
    except ValueError:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"n must be a whole number\n"]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])

    def lines():
        for i in range(1, count + 1):
            yield f"line {i} of {count}\n".encode()
            if i < count:
                time.sleep(0.2)

    return lines()


def show_environ(environ, start_response):
    lines = [f"{k}={v}\n" for k, v in sorted(environ.items()) if isinstance(v, str)]
    body = "".join(lines).encode("utf-8", "surrogateescape")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body]


ROUTES = {"/": hello, "": hello, "/echo": echo, "/stream": stream, "/environ": show_environ}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]
    return handler(environ, start_response)
