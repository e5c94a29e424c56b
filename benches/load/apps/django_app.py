"""django_app: a Django view returning a plain HttpResponse, the whole project in one file.

The settings are those of `django-admin startproject` that need no database (no sessions,
auth or messages): DEBUG off, the security, common and clickjacking middleware, one URL.
The module is its own URLconf, so every server imports it by the same name (`django_app`).
"""

import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="benchmark only, not a secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)
django.setup()


def plain(request):
    return HttpResponse(b"Hello, World!", content_type="text/plain")


urlpatterns = [path("plain", plain)]

# After settings.configure: Django's WSGI handler reads the settings when it is built.
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
