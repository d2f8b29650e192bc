"""The console logger of every job: one line per event; the error's stack trace only at DEBUG.

A configuration error (a malformed ``LABELING_*`` variable, a missing template) is one line
that says what to fix; Dagster's own console logger follows it with about a hundred lines of
stack trace. Here the trace is printed only when the log level is DEBUG (``labeling-pipeline
run --log-level DEBUG``); the instance's event log keeps it in full whatever the level.
"""

import logging
import sys

import dagster as dg
from dagster._utils.log import create_console_logger


class _FirstLineUnlessDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\n" in message:
            record.msg, record.args = message.split("\n", 1)[0], None
        return True


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, is_required=False, default_value="INFO"),
        "name": dg.Field(str, is_required=False, default_value="dagster"),
    },
    description="Console output, one line per event (stack traces at DEBUG only).",
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = str(init_context.logger_config["log_level"]).upper()
    logger = create_console_logger(init_context.logger_config["name"], level)
    if logging.getLevelName(level) != logging.DEBUG:
        for handler in logger.handlers:
            handler.addFilter(_FirstLineUnlessDebug())
            if getattr(handler, "stream", None) is None:
                handler.stream = sys.stderr
    return logger


@dg.definitions
def loggers() -> dg.Definitions:
    """The console logger every job of this code location uses."""
    return dg.Definitions(loggers={"console": console_logger})
