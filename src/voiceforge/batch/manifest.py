"""A batch manifest (CSV with a header row, or JSON Lines): one item per row, checked up front.

Columns: ``id`` (names the output file) and ``text`` (1–200 characters, the /tts contract) are
required; ``voice`` (a stock or saved voice) or ``prompt`` (a 3–15 s recording, relative to the
manifest) choose the voice, and a row with neither speaks with ``--voice`` or else the default
voice, as /tts and ``voiceforge say`` do. ``prompt_text``, ``mode``, ``instruct``, ``seed``,
``speed`` and ``format`` are optional. Every problem is reported with its line number and field,
all of them at once, so one pass fixes the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voiceforge.errors import InvalidInput
from voiceforge.fields import FormatName, ModeName, Seed, Speed

MAX_TEXT = 200  # the /tts contract; a longer text is a long-form job
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
COLUMNS = ("id", "text", "voice", "prompt", "prompt_text", "mode", "instruct", "seed", "speed", "format")


class Row(BaseModel):
    """One manifest row as written (blank cells are left out first, so defaults apply)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: Annotated[str, Field(pattern=ID.pattern, description="letters, digits, . _ -; names the output")]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    voice: Annotated[str | None, Field(max_length=200)] = None
    prompt: Annotated[str | None, Field(max_length=1000)] = None
    prompt_text: Annotated[str | None, Field(max_length=1000)] = None
    mode: ModeName | None = None
    instruct: Annotated[str | None, Field(max_length=500)] = None
    seed: Seed = 1
    speed: Speed = 1.0
    format: FormatName = "wav"


@dataclass(frozen=True)
class Item:
    """A checked row: what to speak and where its output goes."""

    line: int
    id: str
    text: str
    voice: str | None
    prompt: Path | None
    prompt_text: str | None
    mode: str | None
    instruct: str | None
    seed: int
    speed: float
    format: str

    @property
    def filename(self) -> str:
        return f"{self.id}.{self.format}"

    def fingerprint(self) -> str:
        """Identifies the request (an Idempotency-Key, and what --resume compares)."""
        fields = [
            self.id,
            self.text,
            self.voice,
            str(self.prompt),
            self.prompt_text,
            self.mode,
            self.instruct,
        ]
        canonical = json.dumps([*fields, self.seed, round(self.speed, 3), self.format], ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    line: int
    message: str
    id: str | None = None  # the row's id, when it has one

    @property
    def label(self) -> str:
        """What names the row in results.jsonl: its id, or its line when it has none."""
        return self.id or f"line {self.line}"

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ManifestError(InvalidInput):
    """The manifest has problems; ``problems`` lists each with its line."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"{path}: {len(problems)} problem{'s' * (len(problems) != 1)}; fix them and run again:"
            f"\n{shown}{more}",
            detail=[{"line": p.line, "message": p.message} for p in problems],
        )
        self.problems = problems


def load(path: Path, *, default_voice: str | None = None) -> list[Item]:
    """Every item of the manifest, or ManifestError listing every problem with its line number."""
    items, problems = check(path, default_voice=default_voice)
    if problems:
        raise ManifestError(path, problems)
    return items


def check(path: Path, *, default_voice: str | None = None) -> tuple[list[Item], list[Problem]]:
    """The valid items and the problems of the invalid rows (by line), for ``--skip-invalid``.

    A file that cannot be read or parsed as a whole still raises."""
    rows, problems = _rows(path)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line, raw in rows:
        item, errors = _item(line, raw, path.parent, default_voice)
        problems.extend(errors)
        if item is None:
            continue
        if item.id in seen:
            problems.append(
                Problem(
                    line,
                    f"id {item.id!r} is used again (first on line {seen[item.id]}); "
                    "ids name outputs and must be unique",
                    f"{item.id}@line{line}",
                )
            )
            continue
        seen[item.id] = line
        items.append(item)
    if not rows and not problems:
        problems.append(Problem(1, "the manifest has no items"))
    return items, sorted(problems, key=lambda p: p.line)


def _rows(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    try:
        content = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"manifest {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read manifest {str(path)!r}: {e} (it must be UTF-8 text)") from e
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl(content)
    if suffix in (".csv", ".tsv"):
        return _csv(content, "\t" if suffix == ".tsv" else ",", path)
    raise InvalidInput(f"manifest {str(path)!r}: use a .csv (with a header row) or .jsonl file")


def _jsonl(content: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    rows, problems = [], []
    for n, text in enumerate(content.splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(Problem(n, f"not valid JSON ({e.msg} at column {e.colno})"))
            continue
        if not isinstance(value, dict):
            problems.append(
                Problem(
                    n,
                    "each line must be a JSON object such as "
                    '{"id": "a1", "text": "你好", "voice": "zf_xiaobei"}',
                )
            )
            continue
        rows.append((n, value))
    return rows, problems


def _csv(content: str, delimiter: str, path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    reader = csv.reader(content.splitlines(keepends=True), delimiter=delimiter)
    header: list[str] | None = None
    rows, problems = [], []
    for record in reader:
        n = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [h.strip().lower() for h in record]
            # A bad header spoils every row under it: no row is worth running, so it always stops.
            unknown = [h for h in header if h not in COLUMNS]
            if unknown:
                problems.append(
                    Problem(
                        n,
                        f"unknown column(s) {', '.join(map(repr, unknown))}; "
                        f"columns are {', '.join(COLUMNS)}",
                    )
                )
            if "id" not in header or "text" not in header:
                problems.append(Problem(n, "the header row must name at least the columns id and text"))
            if problems:
                raise ManifestError(path, problems)
            continue
        if len(record) > len(header):
            problems.append(
                Problem(
                    n,
                    f"{len(record)} cells but the header has {len(header)} columns "
                    "(quote text that contains commas)",
                )
            )
            continue
        rows.append((n, {h: v for h, v in zip(header, record, strict=False) if h in COLUMNS}))
    return rows, problems


def _item(
    line: int, raw: dict[str, Any], base: Path, default_voice: str | None
) -> tuple[Item | None, list[Problem]]:
    present = {k: v for k, v in raw.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    row_id = present.get("id") if isinstance(present.get("id"), str) else None
    try:
        row = Row.model_validate(present)
    except ValidationError as e:
        return None, [Problem(line, _describe(err), row_id) for err in e.errors()]
    problems = []
    # No voice and no prompt: --voice, else the engine's default voice (None), as /tts does.
    voice = row.voice or (None if row.prompt else default_voice)
    prompt: Path | None = None
    if row.voice and row.prompt:
        problems.append(Problem(line, "give voice or prompt, not both"))
    if row.prompt:
        prompt = (base / row.prompt).resolve()
        if not prompt.is_file():
            problems.append(
                Problem(line, f"prompt: file {row.prompt!r} not found (paths are relative to the manifest)")
            )
    if row.mode == "preset" and row.prompt:
        problems.append(
            Problem(line, "mode preset speaks a stock voice; drop the prompt or use mode zero_shot")
        )
    if row.mode == "instruct" and not row.instruct:
        problems.append(Problem(line, "mode instruct needs an instruct, e.g. 'slower and sadder'"))
    if problems:
        return None, [Problem(p.line, p.message, row.id) for p in problems]
    item = Item(
        line,
        row.id,
        row.text,
        voice,
        prompt,
        row.prompt_text,
        row.mode,
        row.instruct,
        row.seed,
        row.speed,
        row.format,
    )
    return item, []


def _describe(err: Any) -> str:
    field = ".".join(str(p) for p in err.get("loc", ())) or "row"
    if err.get("type") == "missing":
        return f"{field} is missing"
    if err.get("type") == "extra_forbidden":
        return f"unknown field {field!r}; fields are {', '.join(COLUMNS)}"
    value = err.get("input")
    if field == "text" and err.get("type") == "string_too_long":
        return (
            f"text is {len(value)} characters; an item takes at most {MAX_TEXT} "
            "(split it into several rows, or submit it as a long-form job)"
        )
    shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else f"{len(value)} characters"
    msg = str(err.get("msg", "is invalid"))
    return f"{field}: {msg[0].lower() + msg[1:]} (got {shown})"
