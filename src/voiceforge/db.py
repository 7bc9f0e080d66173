"""The one database: voices, jobs, API keys, audit rows, upload sessions.

SQLite by default (``<data_dir>/voiceforge.db``; WAL and a busy timeout make it safe for threads
and processes on one machine) or any SQLAlchemy URL such as PostgreSQL for several nodes
(``postgresql://user:pw@host/db`` uses psycopg 3; state changes lock their row). Every table
declares itself on :class:`Base`; tables are created on first use, and again when a module
imported later declares more. There is no Alembic yet, so a schema change needs a migration
before release.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from voiceforge.errors import StorageUnavailable

BUSY_TIMEOUT_MS = 30_000
SCHEMA_LOCK_KEY = 0x766F6963  # 'voic': PostgreSQL advisory lock held while creating tables


class Base(DeclarativeBase):
    pass


class Database:
    """An engine plus read and write sessions, each one transaction."""

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        default = URL.create("sqlite", database=str(Path(data_dir) / "voiceforge.db"))
        url = make_url(database_url) if database_url else default
        if url.drivername in ("postgresql", "postgres"):  # psycopg 3 is the driver we ship
            url = url.set(drivername="postgresql+psycopg")
        if url.get_backend_name() == "sqlite":
            self.engine = create_engine(url)
            _sqlite_setup(self.engine)
        else:  # a server: connections that died with a restart are replaced, not handed out
            self.engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800)
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        # Writes begin with BEGIN IMMEDIATE on SQLite: a read-then-write transaction would otherwise
        # fail with "database is locked" at once when another process wrote in between.
        self._writes = sessionmaker(
            self.engine.execution_options(voiceforge_write=True), expire_on_commit=False
        )
        self._schema_lock = threading.Lock()
        self._tables_created = 0  # how many of Base's tables exist; a module imported later adds more

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        try:
            self.ensure_schema()
            with (self._writes if write else self._reads)() as s, s.begin():
                yield s
        except OperationalError as e:  # locked past the busy timeout, or the server is gone
            raise StorageUnavailable(
                f"the database is busy or unreachable ({str(e.orig)[:120]}); retry in a few seconds"
            ) from e

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query (readiness check)."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def ensure_schema(self) -> None:
        """Create the tables declared on :class:`Base` so far that do not exist yet."""
        if self._tables_created == len(Base.metadata.tables):
            return
        with self._schema_lock:
            declared = len(Base.metadata.tables)
            if self._tables_created == declared:
                return
            db = self.engine.url.database
            if self.engine.dialect.name == "sqlite" and db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            with self.engine.execution_options(voiceforge_write=True).begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    # Several workers start at once: without a lock two CREATE TABLEs race and
                    # one fails on pg_type's unique index. The lock ends with this transaction.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
                Base.metadata.create_all(conn)
            self._tables_created = declared


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(t: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _sqlite_setup(engine: Any) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # first: switching to WAL may wait
        cur.execute("PRAGMA journal_mode = WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("voiceforge_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
