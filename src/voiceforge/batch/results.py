"""The results file of a batch run: one JSON line per finished item, appended as each finishes.

Each line is written with one ``write`` and flushed to disk before the next item is counted, and
an item's audio is in place (renamed atomically) before its line is written. So a run killed at
any moment loses at most the items that were in flight, which ``--resume`` runs again; a torn
last line from a crash is ignored. A later line for the same id supersedes an earlier one.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Status = Literal["succeeded", "failed", "invalid"]  # invalid: a row --skip-invalid left out
FILENAME = "results.jsonl"


@dataclass(frozen=True)
class Result:
    id: str
    status: Status
    path: str | None  # the output, relative to the results file's folder
    duration: float | None  # seconds of audio
    attempts: int
    error: str | None
    code: str | None = None  # the error's code (invalid_input, rate_limited, …)
    fingerprint: str | None = None  # the request it answers; a changed row runs again on --resume
    elapsed_s: float | None = None
    line: int | None = None  # the manifest line of an invalid row

    @classmethod
    def of(cls, data: dict[str, Any]) -> Result:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


class ResultsFile:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILENAME
        self._lock = threading.Lock()

    def load(self) -> dict[str, Result]:
        """The latest result per id; a torn or garbled line (a crash mid-write) is skipped."""
        latest: dict[str, Result] = {}
        if not self.path.is_file():
            return latest
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # torn last line
                try:
                    result = Result.of(json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    continue
                latest[result.id] = result
        return latest

    def done(self, result: Result) -> bool:
        """Whether ``result`` is a success whose output is still there."""
        return (
            result.status == "succeeded" and bool(result.path) and (self.folder / str(result.path)).is_file()
        )

    def append(self, result: Result) -> None:
        line = json.dumps(asdict(result), ensure_ascii=False) + "\n"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size and not _ends_with_newline(self.path):
                    os.write(fd, b"\n")  # close a torn line left by a crash
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def compact(self) -> None:
        """Rewrite the file with one line per id (atomically), once a run has ended."""
        latest = self.load()
        part = self.path.with_name(f".{FILENAME}.part")
        with self._lock:
            part.write_text(
                "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in latest.values())
            )
            part.replace(self.path)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
