"""Logging for the server process, configured once by the entrypoint.

stdout and ``logs/runtime.log`` (rotated by size) get every line; errors are also copied to
``logs/error_archive/errors-YYYYMMDD.log``. ``VOICEFORGE_LOG_JSON=1`` writes one JSON object per
line with the request's trace id, key id and cost. Request context travels in contextvars, set by
the request middleware, so stage lines need no plumbing.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any

from voiceforge.config import Settings

trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
key_id: contextvars.ContextVar[str] = contextvars.ContextVar("key_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(trace_id)s]: %(message)s"
RUNTIME_LOG = "runtime.log"


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = trace_id.get()
        record.key_id = key_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", "-"),
            "key_id": getattr(record, "key_id", "-"),
        }
        for extra in ("cost_ms", "status", "route"):
            if hasattr(record, extra):
                entry[extra] = getattr(record, extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _DailyArchive(logging.Handler):
    """Errors appended to error_archive/errors-YYYYMMDD.log (UTC), kept past log rotation."""

    def __init__(self, folder: Path, formatter: logging.Formatter) -> None:
        super().__init__(logging.ERROR)
        self.folder = folder
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            day = time.strftime("%Y%m%d", time.gmtime(record.created))
            with (self.folder / f"errors-{day}.log").open("a", encoding="utf-8") as f:
                f.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def configure_logging(settings: Settings) -> Path:
    """Install the handlers on the root logger; return the runtime log's path."""
    folder = Path(settings.log_dir)
    (folder / "error_archive").mkdir(parents=True, exist_ok=True)
    formatter: logging.Formatter = JsonFormatter() if settings.log_json else logging.Formatter(TEXT_FORMAT)
    formatter.converter = time.gmtime
    runtime = folder / RUNTIME_LOG
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stdout),
        logging.handlers.RotatingFileHandler(
            runtime, maxBytes=20 * 1024 * 1024, backupCount=5, encoding="utf-8"
        ),
        _DailyArchive(folder / "error_archive", formatter),
    ]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    context = _Context()
    for handler in handlers:
        if handler.formatter is None:
            handler.setFormatter(formatter)
        handler.addFilter(context)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("uvicorn.access", "httpx", "multipart", "python_multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return runtime
