"""Says how a request reached the application: its scheme and HTTP version."""


def application(environ, start_response):
    body = f"{environ['wsgi.url_scheme']} {environ['SERVER_PROTOCOL']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
