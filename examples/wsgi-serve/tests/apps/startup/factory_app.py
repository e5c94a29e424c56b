"""Application factories, as Flask's `create_app` convention has them."""


def create_app(env="default", debug=True, **extra):
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"env={env!r} debug={debug!r} extra={sorted(extra.items())!r}\n".encode()]

    return application


def failing_factory():
    raise RuntimeError("the factory refused: missing setting WSGI_FIXTURE_SECRET")


def forgetful_factory():
    application = create_app()  # noqa: F841 - the missing `return` is the point
