"""echo: reads the whole request body with wsgi.input.read() and answers its length."""


def application(environ, start_response):
    data = environ["wsgi.input"].read()
    body = str(len(data)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
