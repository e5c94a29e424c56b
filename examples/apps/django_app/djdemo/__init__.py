"""djdemo: a small Django project served in-process by wsgi-rs (see passenger_wsgi.py)."""
