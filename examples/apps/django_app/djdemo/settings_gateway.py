"""djdemo behind the `gateway` example: the Rust service signs users in, Django trusts it.

The gateway verifies its own session cookie and hands the user over as REMOTE_USER, which
only Rust code can set (a client's `Remote-User:` header is HTTP_REMOTE_USER). Django's
RemoteUserMiddleware logs that user in, and logs them out again once a request arrives
without it.
"""

from .settings import *  # noqa: F403
from .settings import MIDDLEWARE

MIDDLEWARE = [
    *MIDDLEWARE[: MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1],
    "django.contrib.auth.middleware.RemoteUserMiddleware",
    *MIDDLEWARE[MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1 :],
]

AUTHENTICATION_BACKENDS = ["djdemo.gateway.GatewayUserBackend"]
