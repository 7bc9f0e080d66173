"""Logging for the server process, configured once by the entrypoint.

stdout and ``logs/runtime.log`` (rotated by size) get every line; errors are also copied to
``logs/error_archive/errors-YYYYMMDD.log``. ``VOICEFORGE_LOG_JSON=1`` writes one JSON object per
line with the request's trace id, key id and cost. Request context travels in contextvars, set by
the request middleware, so stage lines need no plumbing.

A text line is one line: control characters in it (a newline in a request path or a voice name, a
carriage return, a terminal escape) are written escaped (``\\n``, ``\\r``, ``\\x1b``), so what a
client sends can never forge a line in ``runtime.log`` or the admin's live view. A traceback keeps
its lines, but none of them can pass for a record. JSON lines are escaped by JSON itself.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path
from typing import Any

from voiceforge.config import Settings

trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
key_id: contextvars.ContextVar[str] = contextvars.ContextVar("key_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(trace_id)s]: %(message)s"
RUNTIME_LOG = "runtime.log"
ACCESS_FIELDS = ("method", "route", "path", "status", "cost_ms")  # extras of the access line
# C0 and C1 controls (tab aside), DEL, and the Unicode line and paragraph separators: as escapes.
_CONTROLS = [*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES = {c: "\\n" if c == 0x0A else "\\r" if c == 0x0D else ascii(chr(c))[1:-1] for c in _CONTROLS}
_TRACEBACK_ESCAPES = {c: e for c, e in _ESCAPES.items() if c != 0x0A}
_LOOKS_LIKE_A_RECORD = re.compile(r"^(?=\d{4}-\d\d-\d\d)", re.M)  # TEXT_FORMAT starts with the date


class ContextFilter(logging.Filter):
    """Puts the request's trace id and key id on every record (the formats name them)."""

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
        # Stage lines read "[<task id>] ..."; the id gets a field of its own for log queries.
        if record.args and isinstance(record.args, tuple) and str(record.msg).startswith("[%s]"):
            entry["task_id"] = record.args[0]
        for extra in ACCESS_FIELDS:
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


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """Rotates by the bytes it wrote. The stdlib's check formats every record a second time and
    seeks the file, half the cost of a line on the cached-/tts path."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._size = path.stat().st_size if path.exists() else 0

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (the stdlib's name)
        return self._size >= self.maxBytes > 0

    def doRollover(self) -> None:  # noqa: N802
        super().doRollover()
        self._size = 0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self._size += len(getattr(record, "message", "")) + 64  # near enough, without formatting again


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` with every control character escaped: one record, one line (plus its
    traceback, whose lines are indented where they could pass for a record)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (the stdlib's name)
        return super().formatMessage(record).translate(_ESCAPES)

    def formatException(self, ei: Any) -> str:  # noqa: N802
        text = super().formatException(ei).translate(_TRACEBACK_ESCAPES)
        return _LOOKS_LIKE_A_RECORD.sub("  ", text)

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _LOOKS_LIKE_A_RECORD.sub("  ", stack_info.translate(_TRACEBACK_ESCAPES))


class _FormatOnce(logging.Formatter):
    """Formats a record once for every handler that shows it (stdout, runtime.log, the archive,
    the live stream) instead of once per handler."""

    def __init__(self, inner: logging.Formatter, key: str) -> None:
        super().__init__()
        self.inner = inner
        self.key = key  # one cache slot per format, so text and JSON never mix

    def format(self, record: logging.LogRecord) -> str:
        text = record.__dict__.get(self.key)
        if text is None:
            text = self.inner.format(record)
            record.__dict__[self.key] = text
        return str(text)


def make_formatter(settings: Settings) -> logging.Formatter:
    """Text (``TEXT_FORMAT``, UTC) or one JSON object per line, as ``settings.log_json`` says."""
    inner: logging.Formatter = JsonFormatter() if settings.log_json else TextFormatter(TEXT_FORMAT)
    inner.converter = time.gmtime
    return _FormatOnce(inner, "_voiceforge_json" if settings.log_json else "_voiceforge_text")


def configure_logging(settings: Settings) -> Path:
    """Install the handlers on the root logger; return the runtime log's path."""
    folder = Path(settings.log_dir)
    (folder / "error_archive").mkdir(parents=True, exist_ok=True)
    formatter = make_formatter(settings)
    runtime = folder / RUNTIME_LOG
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stdout),
        _RotatingFile(runtime, 20 * 1024 * 1024, 5),
        _DailyArchive(folder / "error_archive", formatter),
    ]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    context = ContextFilter()
    for handler in handlers:
        if handler.formatter is None:
            handler.setFormatter(formatter)
        handler.addFilter(context)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("uvicorn.access", "httpx", "multipart", "python_multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Neither format shows the caller's file and line or the process: skip gathering them for every
    # record (the logging HOWTO's "Optimization" switches; a third of a record's cost).
    logging._srcfile = None
    logging.logProcesses = logging.logMultiprocessing = False
    return runtime
