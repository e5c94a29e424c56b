"""Entry point for serving the djdemo Django project: `Engine::builder("…/passenger_wsgi.py")`.

The engine puts this file's directory first on sys.path, which makes the `djdemo` package
importable; the WSGI callable is Django's own, built in djdemo/wsgi.py.
"""

from djdemo.wsgi import application  # noqa: F401  (the engine looks up `application`)
