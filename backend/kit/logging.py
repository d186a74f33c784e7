"""Structured logs (structlog) as one JSON object a line on stderr, with the request id bound per request."""

import logging
import sys
import threading
import traceback
from types import TracebackType
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class StderrLogger:
    """Writes each line to the current `sys.stderr` (stdout is for command output), one line at a time."""

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


def _exc_info(value: Any) -> ExcInfo | None:
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and value and value[0] is not None:
        return value
    if value is True:
        current = sys.exc_info()
        return current if current[0] is not None else None
    return None


def render_exception(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """`log.exception(...)` and `exc_info=` become the error's type, message and traceback."""
    found = _exc_info(event.pop("exc_info", None))
    if found is not None:
        kind, error, trace = found
        event["error_type"] = kind.__name__
        event["error_message"] = str(error)
        event["traceback"] = "".join(traceback.format_exception(kind, error, trace))
    return event


def configure(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            render_exception,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=lambda *_: StderrLogger(),
        cache_logger_on_first_use=False,  # a reconfigured level applies to every module's logger
    )
