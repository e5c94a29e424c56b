"""Found only because the --chdir directory is on sys.path."""

GREETING = "settings imported from the --chdir directory"
