"""A throwaway PostgreSQL server on a free loopback port, for the multi-node database tests."""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import system_binary
from tests.integration.conftest import free_port


def pg_binary(name: str) -> str:
    """Debian keeps initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    return found or system_binary(name, "postgresql")


@dataclass
class Postgres:
    """One cluster in a temporary folder; ``stop`` and ``start`` take it away and bring it back."""

    folder: Path
    port: int
    as_user: list[str]  # postgres refuses to run as root: run its tools as the ``postgres`` user

    @property
    def url(self) -> str:
        return f"postgresql://voiceforge@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.as_user, *args], check=check, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        self._run(
            pg_binary("pg_ctl"), "-D", str(self.folder / "data"), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self, check: bool = True) -> None:
        self._run(
            pg_binary("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop", check=check
        )


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """A running PostgreSQL with trust auth for user ``voiceforge``; removed afterwards."""
    initdb = pg_binary("initdb")
    folder = Path(tempfile.mkdtemp(prefix="voiceforge-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    pg = Postgres(folder, free_port(), as_user)
    run = functools.partial(subprocess.run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        run([*as_user, initdb, "-D", str(folder / "data"), "-A", "trust", "-U", "voiceforge", "--no-sync"])
        pg.start()
        yield pg
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            pg.stop(check=False)
        shutil.rmtree(folder, ignore_errors=True)
