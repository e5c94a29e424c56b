"""The `logging.lastResort` handler: records that no handler of the application takes go to
`tracing` (see logging.rs) instead of to a bare stderr."""

import logging


def _emit(level, logger, message):
    """Replaced by Rust (`logging::emit`) before `install()` runs."""
    raise NotImplementedError


class TracingHandler(logging.Handler):
    def emit(self, record):
        try:
            _emit(record.levelno, record.name, self.format(record))
        except Exception:
            self.handleError(record)


def install():
    if not isinstance(logging.lastResort, TracingHandler):
        logging.lastResort = TracingHandler(logging.NOTSET)
