"""All of djdemo's settings, in one file."""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# Everything the project writes (the SQLite database) goes to a throw-away directory,
# unless DJDEMO_DATA_DIR names one.
DATA_DIR = Path(os.environ.get("DJDEMO_DATA_DIR") or tempfile.mkdtemp(prefix="djdemo-"))

SECRET_KEY = "djdemo example key: not a secret, do not deploy"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djdemo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_URL (the admin's CSS, among others) straight from the apps' static/
    # directories, through the server's wsgi.file_wrapper.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "djdemo.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

# Django puts SCRIPT_NAME in front of a relative STATIC_URL once, when the setting is first
# read (at start-up, outside any request: so "/static/"), and pages link there whatever
# prefix serves them. A project always mounted under one prefix would name it here
# ("/legacy/static/"). WhiteNoise serves the files under every prefix (it matches PATH_INFO).
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# No collectstatic step for a demo: WhiteNoise finds the files where the apps keep them.
WHITENOISE_USE_FINDERS = True

# Tracebacks of failed requests go to the server's log (through wsgi.errors' stderr).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
