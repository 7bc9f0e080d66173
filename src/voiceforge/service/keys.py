"""API keys: created once, shown once, stored only as a hash.

A key reads ``vf_<id>_<secret>``: the id (12 hex digits) names the row and may appear in logs and
audit rows; the secret is 256 random bits. The database holds SHA-256 of the whole key. A slow
password hash (bcrypt, argon2) buys nothing here: it protects low-entropy passwords against
guessing, while a 256-bit random secret cannot be guessed, and every request verifies a key, so
the hash has to be cheap. Hashes are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from voiceforge.db import Base, Database, aware, utcnow
from voiceforge.errors import InvalidInput, NotFound, Unauthorized

log = logging.getLogger(__name__)

PREFIX = "vf_"
SCOPES = ("tts", "asr", "voices", "jobs", "uploads", "admin")
_KEY_RE = re.compile(r"vf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MAX_NAME = 100


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    quota_chars: int  # characters per UTC day; 0 = unlimited
    created: datetime
    last_used: datetime | None
    revoked: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked is None


class _KeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole key
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated
    quota_chars: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """``"tts,asr"`` or ``["tts", "asr"]`` → ``("asr", "tts")``; unknown scopes are an error."""
    given = scopes.replace(",", " ").split() if isinstance(scopes, str) else list(scopes)
    unknown = sorted(set(given) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {', '.join(unknown)}; scopes are {', '.join(SCOPES)}")
    if not given:
        raise InvalidInput(f"give at least one scope of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


class KeyStore:
    """Create, verify, list and revoke API keys in the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, scopes: str | Iterable[str], quota_chars: int = 0) -> tuple[ApiKey, str]:
        """A new key; returns its record and the key itself, which is never shown again."""
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidInput(f"key name {name[:40]!r} must be 1-{MAX_NAME} characters")
        if quota_chars < 0:
            raise InvalidInput(f"quota {quota_chars} is negative; give characters per day, or 0 for none")
        wanted = parse_scopes(scopes)
        for _attempt in range(5):
            key_id = secrets.token_hex(6)
            key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            row = _KeyRow(
                id=key_id,
                name=name,
                hash=digest(key),
                scopes=" ".join(wanted),
                quota_chars=quota_chars,
                created=utcnow(),
            )
            try:
                with self.db.session(write=True) as s:
                    s.add(row)
            except IntegrityError:  # a 48-bit id collided; draw another
                continue
            log.info("created API key %s (%s): scopes %s", key_id, name, " ".join(wanted))
            return _record(row), key
        raise RuntimeError("could not draw an unused key id in 5 attempts")

    def create_first_admin(self) -> str | None:
        """An admin key when the table holds no key at all (a first start); else None.

        Checked and inserted in one write transaction, so two processes starting together make one.
        """
        with self.db.session(write=True) as s:
            if s.scalar(select(func.count()).select_from(_KeyRow)):
                return None
            key_id = secrets.token_hex(6)
            key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            s.add(
                _KeyRow(
                    id=key_id,
                    name="admin (first start)",
                    hash=digest(key),
                    scopes=" ".join(SCOPES),
                    quota_chars=0,
                    created=utcnow(),
                )
            )
        log.info("created the first admin API key %s", key_id)
        return key

    def verify(self, key: str) -> ApiKey:
        """The key's record if ``key`` is a valid, unrevoked key; Unauthorized otherwise."""
        match = _KEY_RE.fullmatch(key)
        if match is None:
            raise Unauthorized(
                "the API key is malformed: keys look like vf_<12 hex digits>_<43 characters>; "
                "send the whole key exactly as `voiceforge keys create` printed it"
            )
        with self.db.session() as s:
            row = s.get(_KeyRow, match.group(1))
            record = _record(row) if row is not None else None
            stored = row.hash if row is not None else digest("")
        # Compare even for an unknown id, so both failures take the same time.
        if not hmac.compare_digest(stored, digest(key)) or record is None:
            raise Unauthorized("the API key is not valid; check it, or ask an admin for a new one")
        if record.revoked is not None:
            raise Unauthorized(
                f"API key {record.id} was revoked on {record.revoked:%Y-%m-%d %H:%M} UTC; "
                "ask an admin for a new one (`voiceforge keys create`)"
            )
        return record

    def get(self, key_id: str) -> ApiKey:
        with self.db.session() as s:
            row = s.get(_KeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key with id {key_id!r}; `voiceforge keys list` shows the ids")
            return _record(row)

    def list(self) -> list[ApiKey]:
        with self.db.session() as s:
            return [_record(r) for r in s.scalars(select(_KeyRow).order_by(_KeyRow.created))]

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (kept for the audit trail). Revoking twice keeps the first time."""
        key_id = key_id.removeprefix(PREFIX).split("_")[0]  # a whole key pasted by mistake works too
        with self.db.session(write=True) as s:
            row = s.get(_KeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key with id {key_id!r}; `voiceforge keys list` shows the ids")
            if row.revoked is None:
                row.revoked = utcnow()
            record = _record(row)
        log.info("revoked API key %s (%s)", record.id, record.name)
        return record

    def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Record when keys were last used (batched by the caller: at most once a minute per key)."""
        if not last_used:
            return
        with self.db.session(write=True) as s:
            for key_id, when in last_used.items():
                s.execute(update(_KeyRow).where(_KeyRow.id == key_id).values(last_used=when))


def _record(row: _KeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        quota_chars=row.quota_chars,
        created=aware(row.created),
        last_used=aware(row.last_used) if row.last_used else None,
        revoked=aware(row.revoked) if row.revoked else None,
    )
