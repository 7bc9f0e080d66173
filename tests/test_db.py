"""The database creates its tables on first use, including tables a later import declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.orm import Mapped, mapped_column

from voiceforge.db import Base, Database


@pytest.fixture
def late_table() -> Iterator[str]:
    """A table declared after the database was first used, as a module imported late would."""
    name = "late_declared_rows"
    yield name
    Base.metadata.remove(Base.metadata.tables[name])


def test_a_table_declared_after_first_use_is_created_too(tmp_path: Path, late_table: str) -> None:
    db = Database(tmp_path)
    with db.session() as s:
        s.execute(text("SELECT 1"))
    assert late_table not in inspect(db.engine).get_table_names()

    class Late(Base):
        __tablename__ = late_table
        id: Mapped[int] = mapped_column(primary_key=True)

    with db.session(write=True) as s:
        s.add(Late(id=1))
    assert late_table in inspect(db.engine).get_table_names()
    db.close()
