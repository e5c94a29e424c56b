"""Django's WSGI callable for djdemo.

No FORCE_SCRIPT_NAME: the mount prefix arrives per request as SCRIPT_NAME, so the same
`application` can be served at the root and under any number of prefixes at once.
"""

import os

from django.core.management import call_command
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djdemo.settings")

application = get_wsgi_application()

# The demo keeps its SQLite database in a fresh temporary directory (see settings.py), so
# it creates its tables when it starts. A real deployment runs `manage.py migrate` instead.
call_command("migrate", interactive=False, verbosity=0)
