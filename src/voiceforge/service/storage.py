"""Where outputs live: a Storage protocol and the local-directory implementation.

Names are checked against one pattern before any path is built (``<id>.<ext>`` of safe
characters), so no caller string reaches the filesystem. An S3-compatible store implements the
same five methods.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from voiceforge.errors import NotFound, StorageUnavailable

if TYPE_CHECKING:
    from voiceforge.config import Settings

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,95}\.[a-z0-9]{1,8}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise NotFound(f"no output named {str(name)[:80]!r}; outputs are named <task_id>.<ext>")
    return name


class Storage(Protocol):
    """Where outputs go. ``path`` hands back a local file to serve (with ranges): a remote store
    (S3-compatible) returns a read-through copy in a local cache directory."""

    def put(self, name: str, data: bytes) -> None: ...
    def path(self, name: str) -> Path: ...
    def exists(self, name: str) -> bool: ...
    def delete(self, name: str) -> None: ...
    def expire(self, older_than_s: float) -> int: ...


class LocalStorage:
    """A directory (local disk or a shared mount such as NFS)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        """Write atomically: readers see the whole file or none of it."""
        target = self.root / check_name(name)
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException as e:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise StorageUnavailable(
                    f"cannot save {name}: the output folder {self.root} is full or read-only "
                    f"({e.strerror}); the operator must free space; retry later"
                ) from e
            raise

    def path(self, name: str) -> Path:
        path = self.root / check_name(name)
        if not path.is_file():
            raise NotFound(f"output {name!r} does not exist (expired after the retention period?)")
        return path

    def exists(self, name: str) -> bool:
        return NAME.fullmatch(name) is not None and (self.root / name).is_file()

    def delete(self, name: str) -> None:
        (self.root / check_name(name)).unlink(missing_ok=True)

    def expire(self, older_than_s: float) -> int:
        """Delete outputs (and leftover temp files) older than ``older_than_s``; return the count."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self._files():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info(
                "retention: removed %d files older than %.0f h from %s",
                removed,
                older_than_s / 3600,
                self.root,
            )
        return removed

    def _files(self) -> Iterator[Path]:
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    yield Path(entry.path)


def open_storage(settings: Settings) -> Storage:
    """The outputs store the settings name: ``output_dir``, a local disk or a shared mount (NFS)
    that every API node and worker sees. The place where an S3-compatible store would be chosen."""
    return LocalStorage(settings.output_dir)
