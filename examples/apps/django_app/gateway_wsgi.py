"""Entry point for djdemo behind the `gateway` example, which signs users in on the Rust
side: the same project as passenger_wsgi.py, with settings_gateway.py's REMOTE_USER
middleware and backend."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "djdemo.settings_gateway"

from djdemo.wsgi import application  # noqa: E402,F401  (the engine looks up `application`)
