"""Defines names that exist but are not WSGI callables."""

application = 42
