"""Files a job reads when it runs (a recording to transcribe), kept from submit until it finishes.

On several nodes the root must be shared storage, like the outputs directory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from voiceforge.errors import NotFound
from voiceforge.jobs.store import check_job_id

_NAME = re.compile(r"[a-z0-9_]{1,32}")


class InputFiles:
    """``<root>/<job id>/<name>``; ids and names are checked before any path is built."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(self, job_id: str, files: dict[str, bytes | Path]) -> None:
        """Store each file (bytes, or a copy of a file) atomically under its name."""
        folder = self.root / check_job_id(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"bad job input name {name!r}")
            part = folder / f".{name}.part"
            if isinstance(data, Path):
                shutil.copyfile(data, part)
            else:
                part.write_bytes(data)
            part.replace(folder / name)

    def path(self, job_id: str, name: str) -> Path:
        path = self.root / check_job_id(job_id) / name
        if not path.is_file():
            raise NotFound(f"the input {name!r} of job {job_id} is gone; submit the job again")
        return path

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.root / check_job_id(job_id), ignore_errors=True)
