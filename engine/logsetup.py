"""Logging: console and a rotating file (50 MB x 7), IST timestamps, secrets redacted."""

from __future__ import annotations

import logging
import logging.handlers
from datetime import datetime
from pathlib import Path

from engine.redact import redact, register_secret
from engine.timeutil import IST

__all__ = ["MAX_BYTES", "RedactingFilter", "RedactingFormatter", "redact", "register_secret", "setup_logging"]

MAX_BYTES = 50 * 1024 * 1024
BACKUPS = 7


class RedactingFilter(logging.Filter):
    """Rewrite each record's message with secrets removed (args are merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed %-format still gets logged, redacted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class ISTFormatter(logging.Formatter):
    """Timestamps in IST with milliseconds and the +05:30 offset."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, IST)
        return moment.strftime(datefmt) if datefmt else moment.isoformat(timespec="milliseconds")


class RedactingFormatter(ISTFormatter):
    """The whole formatted line (logger name, message, traceback) goes through ``redact``."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"


def setup_logging(level: str = "info", log_dir: Path | None = None, filename: str = "engine.log") -> None:
    """Configure the root logger once: console plus, when ``log_dir`` is given, a rotating file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_engine_handler", False):
            root.removeHandler(handler)
    root.setLevel(level.upper())
    formatter = RedactingFormatter(FORMAT)
    console = logging.StreamHandler()
    handlers: list[logging.Handler] = [console]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            log_dir / filename, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._engine_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.getLogger("psycopg.pool").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("pgserver").setLevel(max(root.level, logging.WARNING))
