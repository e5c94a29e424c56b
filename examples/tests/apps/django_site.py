"""The djdemo Django project (examples/apps/django_app), as the Django tests serve it:
the same `application` the examples use, wrapped in `report_iterable` so the tests can see
that file responses go through `wsgi.file_wrapper`.

Any number of engines may load this file or passenger_wsgi.py in one process: both reach
the one `djdemo.wsgi` module, so Django is set up once and each request's SCRIPT_NAME
gives its prefix.
"""

import os
import sys

sys.path.insert(
    0, os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "apps", "django_app"))
)

from djdemo.wsgi import application as django_application  # noqa: E402

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import report_iterable  # noqa: E402

application = report_iterable(django_application)
