"""The voice library: cloned voices as a database row plus files under ``<data_dir>/voices/<id>/``.

Rows live in the ``voices`` table of the shared database (:mod:`voiceforge.db`).
Files are written atomically and a row is committed only once its files are in place. Ids are
checked against their exact pattern before any path is built, so no caller string reaches the disk.
A prompt recording is decoded and stored re-encoded as ``prompt.wav`` (created or imported alike):
only audio that decodes is kept, and no name or extension a caller gave reaches the disk, so no
stored file can be served as anything but audio. Voices saved by older versions keep their
``prompt.<container>``.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from voiceforge.db import Base, Database, aware, utcnow
from voiceforge.errors import InvalidInput, NotFound
from voiceforge.voices.archive import as_wav, load_profile, read_zip
from voiceforge.voices.profile import VoiceProfile

log = logging.getLogger(__name__)

MAX_NAME = 64
MAX_EXPORT_BYTES = 64 * 1024 * 1024  # total uncompressed size of an import
PROMPT_FORMAT = "wav"  # every prompt is stored as prompt.wav
_ID = re.compile(r"voice_[0-9a-f]{16}")
_FORMAT = re.compile(r"[a-z0-9]{1,8}")
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_JOINERS = {"\u200c", "\u200d"}  # format characters that real names (Indic scripts, emoji) need
_EXPORT_FORMAT = "voiceforge.voice"
_RENAME_HINT = "pick another name or rename it"
DOUBTFUL = "transcript_doubtful"  # in meta: recognised words to check (service/cloning.Heard)
CONSENT_BY, CONSENT_AT = "consent_by", "consent_at"  # in meta: a new table column needs a migration
NO_CONSENT = (
    "consent is missing or false: a voice is saved only once the speaker agreed to be cloned; "
    "record their agreement with consent=true (API field 'consent', CLI --consent, the UI's consent box)"
)


@dataclass(frozen=True)
class VoiceRecord:
    id: str  # "voice_" + 16 hex chars (uuid4); never derived from the name
    name: str
    language: str
    transcript: str
    consent: bool  # the uploader confirmed they may clone this voice
    engine: str
    created_at: datetime  # UTC, aware
    updated_at: datetime
    prompt_format: str  # file extension of the prompt recording: "wav" (older versions: the container)
    profile_digest: str
    meta: dict[str, Any]  # enrollment figures (SIM, duration, notes), JSON-serialisable

    @property
    def consent_by(self) -> str | None:
        """Who affirmed the speaker's consent (a key id, ``jwt:<subject>``, ``cli:<user>``)."""
        value = self.meta.get(CONSENT_BY)
        return value if isinstance(value, str) else None

    @property
    def consent_at(self) -> datetime | None:
        """When consent was affirmed (UTC)."""
        value = self.meta.get(CONSENT_AT)
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None


class _VoiceRow(Base):
    __tablename__ = "voices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    name_key: Mapped[str] = mapped_column(String(4 * MAX_NAME), unique=True)  # NFKC + casefold
    language: Mapped[str] = mapped_column(String(16))
    transcript: Mapped[str] = mapped_column(Text)
    consent: Mapped[bool]
    engine: Mapped[str] = mapped_column(String(64))
    prompt_format: Mapped[str] = mapped_column(String(8))
    profile_digest: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VoiceLibrary:
    """Cloned voices on disk, looked up by id or by name (case-insensitive)."""

    def __init__(
        self, data_dir: Path, database_url: str | None = None, *, db: Database | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.voices_dir = self.data_dir / "voices"
        self._own_db = db is None
        self.db = db or Database(self.data_dir, database_url)

    def close(self) -> None:
        if self._own_db:
            self.db.close()

    # -- queries ---------------------------------------------------------------------------------
    def list(self) -> builtins.list[VoiceRecord]:
        """Every voice, newest first."""
        with self._tx() as s:
            rows = s.scalars(select(_VoiceRow).order_by(_VoiceRow.created_at.desc(), _VoiceRow.id))
            return [_record(r) for r in rows]

    def get(self, ref: str) -> VoiceRecord:
        """A voice by id, or by name (case-insensitive); NotFound otherwise."""
        with self._tx() as s:
            return _record(_resolve(s, ref))

    def profile(self, ref: str) -> VoiceProfile:
        rec = self.get(ref)
        try:
            return VoiceProfile.load(self._dir(rec.id) / "profile.npz")
        except FileNotFoundError as e:
            raise NotFound(f"voice {rec.name!r} was just deleted; `voiceforge voices` lists them") from e

    def prompt_path(self, ref: str) -> Path:
        rec = self.get(ref)
        path = self._dir(rec.id) / f"prompt.{rec.prompt_format}"
        if not path.is_file():
            raise NotFound(f"voice {rec.name!r} was just deleted; `voiceforge voices` lists them")
        return path

    # -- changes ---------------------------------------------------------------------------------
    def create(self, name: str, *, prompt: bytes, profile: VoiceProfile, consent: bool,
               meta: dict[str, Any] | None = None, consent_by: str = "local") -> VoiceRecord:  # fmt: skip
        """Store a new voice, its recording as WAV; language, transcript and engine come from the
        profile. ``consent`` must be true (InvalidInput otherwise); ``consent_by`` (who affirmed
        it) and the time are kept."""
        if consent is not True:
            raise InvalidInput(NO_CONSENT, detail={"param": "consent"})
        meta = {**_check_meta(meta), **_affirmed(consent_by)}
        return self._create(name, prompt, "the prompt recording", profile, consent, meta, _RENAME_HINT)

    def rename(self, ref: str, new_name: str) -> VoiceRecord:
        name = _check_name(new_name)
        try:
            with self._tx(write=True) as s:
                row = _resolve(s, ref, for_update=True)
                _check_free(s, name, _RENAME_HINT, but=row.id)
                row.name, row.name_key, row.updated_at = name, _key(name), utcnow()
        except IntegrityError as e:  # a concurrent writer on a database without BEGIN IMMEDIATE
            raise InvalidInput(_clash(name, _RENAME_HINT)) from e
        return _record(row)

    def update(self, ref: str, *, transcript: str | None = None, consent: bool | None = None,
               profile: VoiceProfile | None = None, consent_by: str = "local") -> VoiceRecord:  # fmt: skip
        """Change the transcript, consent (recorded as affirmed by ``consent_by`` now, or withdrawn)
        or profile; the transcript is kept inside the profile too."""
        if transcript is not None and not transcript.strip():
            raise InvalidInput("the transcript is empty; type what the prompt recording says")
        with self._tx(write=True) as s:
            row = _resolve(s, ref, for_update=True)
            if profile is not None or transcript is not None:
                path = self._dir(row.id) / "profile.npz"
                old = path.read_bytes()
                new = profile if profile is not None else VoiceProfile.from_bytes(old)
                if transcript is not None:
                    new = dataclasses.replace(new, transcript=transcript.strip())
                _write_atomic(path, new.to_bytes())  # under the row lock: file and row change together
                s.info["restore"] = (path, old)
                row.transcript, row.language, row.engine = new.transcript, new.language, new.engine
                row.profile_digest = new.digest()
            if transcript is not None:  # a person typed it: nothing left to check
                row.meta = {k: v for k, v in row.meta.items() if k != DOUBTFUL}
            if consent is not None:
                row.consent = bool(consent)
                kept = {k: v for k, v in row.meta.items() if k not in (CONSENT_BY, CONSENT_AT)}
                row.meta = {**kept, **_affirmed(consent_by)} if consent else kept
            row.updated_at = utcnow()
        return _record(row)

    def annotate(self, ref: str, changes: dict[str, Any]) -> VoiceRecord:
        """Set keys of a voice's meta (enrollment figures, learning state); the rest stays."""
        with self._tx(write=True) as s:
            row = _resolve(s, ref, for_update=True)
            row.meta = {**row.meta, **_check_meta(changes)}
        return _record(row)

    def delete(self, ref: str) -> None:
        """Remove the row, then the voice's directory."""
        with self._tx(write=True) as s:
            row = _resolve(s, ref, for_update=True)
            voice_id = row.id
            s.delete(row)
        try:
            shutil.rmtree(self._dir(voice_id))
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("voice %s deleted but its files remain at %s (%s)", voice_id, self._dir(voice_id), e)

    # -- export / import -------------------------------------------------------------------------
    def export(self, ref: str) -> bytes:
        """A zip of voice.json (the record), profile.npz and prompt.wav (an older voice: prompt.<its
        container>), for import_ elsewhere."""
        rec = self.get(ref)
        folder = self._dir(rec.id)
        try:
            profile_bytes = (folder / "profile.npz").read_bytes()
            prompt = (folder / f"prompt.{rec.prompt_format}").read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"voice {rec.name!r} was just deleted; `voiceforge voices` lists them") from e
        profile = VoiceProfile.from_bytes(profile_bytes)  # the files win over a row updated meanwhile
        doc = {"format": _EXPORT_FORMAT, "version": 1, **dataclasses.asdict(rec),
               "created_at": rec.created_at.isoformat(), "updated_at": rec.updated_at.isoformat(),
               "transcript": profile.transcript, "profile_digest": profile.digest()}  # fmt: skip
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("voice.json", json.dumps(doc, ensure_ascii=False, indent=2))
            z.writestr("profile.npz", profile_bytes)
            z.writestr(f"prompt.{rec.prompt_format}", prompt)
        return buf.getvalue()

    def import_(self, data: bytes, *, name: str | None = None) -> VoiceRecord:
        """A voice from an export, under a new id (and `name` when given); everything is validated and
        the recording, whatever its name in the zip, is decoded and stored as prompt.wav."""
        members = read_zip(data, MAX_EXPORT_BYTES, "voice export")
        prompts = [m for m in members if m.startswith("prompt.") and _FORMAT.fullmatch(m[7:])]
        if len(members) != 3 or not prompts or {"voice.json", "profile.npz"} - members.keys():
            raise InvalidInput(
                f"not a voiceforge voice export: expected voice.json, profile.npz and "
                f"prompt.<ext>, found {sorted(members)[:8]!r}"
            )
        try:
            doc = json.loads(members["voice.json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidInput(f"voice.json in the export is not valid JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != _EXPORT_FORMAT:
            raise InvalidInput("voice.json is not a voiceforge voice description; export the voice again")
        fmt = prompts[0][7:]
        if doc.get("prompt_format") != fmt or not isinstance(doc.get("consent"), bool):
            raise InvalidInput(
                "voice.json does not match the export (prompt_format, consent); export it again"
            )
        if not doc["consent"]:  # the saver's record of consent travels with the voice (meta)
            raise InvalidInput(
                f"{NO_CONSENT}; this export says consent: false, so record consent on the server it "
                "came from (PATCH /v1/voices/{id} with consent=true) and export it again",
                detail={"param": "consent"},
            )
        profile = load_profile(members["profile.npz"])
        if doc.get("profile_digest") != profile.digest():
            raise InvalidInput(
                "profile.npz does not match voice.json (damaged export); export the voice again"
            )
        chosen = doc.get("name") if name is None else name
        hint = "import it under another name with --name"
        what = f"{prompts[0]} in the export"
        return self._create(chosen, members[prompts[0]], what, profile, doc["consent"], doc.get("meta"), hint)

    # -- internals -------------------------------------------------------------------------------
    def _create(self, name: object, prompt: bytes, what: str, profile: VoiceProfile, consent: bool,
                meta: object, hint: str) -> VoiceRecord:  # fmt: skip
        clean = _check_name(name)
        if not prompt:
            raise InvalidInput(f"{what} is empty; upload 3–15 s of speech")
        meta = _check_meta(meta)
        with self._tx() as s:
            _check_free(s, clean, hint)  # fail before writing files in the common case
        wav = as_wav(prompt, what)
        voice_id = f"voice_{uuid.uuid4().hex[:16]}"
        folder = self._dir(voice_id)
        folder.mkdir(parents=True)
        try:
            _write_atomic(folder / f"prompt.{PROMPT_FORMAT}", wav)
            _write_atomic(folder / "profile.npz", profile.to_bytes())
            now = utcnow()
            row = _VoiceRow(id=voice_id, name=clean, name_key=_key(clean), language=profile.language,
                            transcript=profile.transcript, consent=bool(consent), engine=profile.engine,
                            prompt_format=PROMPT_FORMAT, profile_digest=profile.digest(), meta=meta,
                            created_at=now, updated_at=now)  # fmt: skip
            with self._tx(write=True) as s:
                _check_free(s, clean, hint)
                s.add(row)
        except IntegrityError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise InvalidInput(_clash(clean, hint)) from e
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        log.info("voice %s created (%s)", voice_id, clean)
        return _record(row)

    def _dir(self, voice_id: str) -> Path:
        if not _ID.fullmatch(voice_id):  # ids come from our rows; check anyway before touching disk
            raise NotFound(f"no voice with id {voice_id[:80]!r}; `voiceforge voices` lists them")
        return self.voices_dir / voice_id

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back (files restored) on error."""
        with self.db.session(write=write) as s:
            try:
                yield s
            except BaseException:
                if "restore" in s.info:
                    _write_atomic(*s.info["restore"])
                raise


def _resolve(s: Session, ref: object, *, for_update: bool = False) -> _VoiceRow:
    row = None
    if isinstance(ref, str) and _ID.fullmatch(ref):
        row = s.get(_VoiceRow, ref, with_for_update=for_update)
    elif isinstance(ref, str) and _plausible_name(ref.strip()):
        query = select(_VoiceRow).where(_VoiceRow.name_key == _key(ref.strip()))
        row = s.scalar(query.with_for_update() if for_update else query)
    if row is None:
        shown = ref[:80] if isinstance(ref, str) else ref
        raise NotFound(f"no voice named {shown!r}; `voiceforge voices` lists them")
    return row


def _check_free(s: Session, name: str, hint: str, *, but: str | None = None) -> None:
    taken = s.scalar(select(_VoiceRow.id).where(_VoiceRow.name_key == _key(name)))
    if taken is not None and taken != but:
        raise InvalidInput(_clash(name, hint))


def _clash(name: str, hint: str) -> str:
    return f"a voice named {name!r} already exists; {hint}"


def _key(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def _plausible_name(name: str) -> bool:
    return 1 <= len(name) <= MAX_NAME and not any(
        unicodedata.category(c) in _BAD_CATEGORIES and c not in _JOINERS for c in name
    )


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"a voice name must be text, not {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name.strip())
    if not 1 <= len(clean) <= MAX_NAME:
        raise InvalidInput(f"voice name {clean[:80]!r} has {len(clean)} characters; use 1–{MAX_NAME}")
    if not _plausible_name(clean):
        raise InvalidInput(
            f"voice name {clean!r} contains control characters; use letters, digits and spaces"
        )
    if _key(clean).startswith("voice_"):
        raise InvalidInput(f"voice name {clean!r} starts with 'voice_', which marks voice ids; pick another")
    return clean


def _affirmed(by: str) -> dict[str, str]:
    return {CONSENT_BY: str(by)[:100], CONSENT_AT: utcnow().isoformat()}


def _check_meta(meta: object) -> dict[str, Any]:
    if meta is None:
        return {}
    try:
        copy = json.loads(json.dumps(meta, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"voice meta must be plain JSON data ({e})") from e
    if not isinstance(copy, dict):
        raise InvalidInput(f"voice meta must be a JSON object, not {type(meta).__name__}")
    return copy


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record(row: _VoiceRow) -> VoiceRecord:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(VoiceRecord)}
    values.update(created_at=aware(row.created_at), updated_at=aware(row.updated_at), meta=dict(row.meta))
    return VoiceRecord(**values)
