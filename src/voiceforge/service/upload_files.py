"""An upload's bytes on disk: spooled from a request, compared with what arrived before, hashed,
and the container named from the header alone when the audio is too long to decode."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import IO

import av

from voiceforge.errors import TooLarge

BLOCK = 1 << 20
# ffmpeg may only pick one of these demuxers when naming a long file's container: its probing would
# otherwise accept playlists (HLS, concat) that open other files.
_DEMUXERS = "wav,w64,aiff,flac,ogg,mov,matroska,mp3,aac,caf,amr"
_CONTAINER_NAMES = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "matroska"}


def spool(folder: Path, source: IO[bytes], limit: int) -> tuple[Path, int, str]:
    """Copy ``source`` into a temporary file in ``folder``: its path, size and sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".chunk-{uuid.uuid4().hex}.tmp"
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("wb") as out:
            while block := source.read(BLOCK):
                size += len(block)
                if size > limit:
                    raise TooLarge(f"the chunk is larger than the {limit} bytes one upload may hold")
                digest.update(block)
                out.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size, digest.hexdigest()


def same(a: IO[bytes], b: IO[bytes], offset: int, length: int) -> bool:
    """Whether the first ``length`` bytes of ``a`` equal ``length`` bytes of ``b`` from ``offset``."""
    a.seek(0)
    b.seek(offset)
    while length > 0:
        n = min(length, BLOCK)
        if a.read(n) != b.read(n):
            return False
        length -= n
    return True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def container(path: Path) -> str:
    try:
        with av.open(str(path), options={"format_whitelist": _DEMUXERS}) as c:
            name = str(c.format.name)
    except (av.FFmpegError, ValueError, OSError):
        return "audio"
    return _CONTAINER_NAMES.get(name, name.split(",", maxsplit=1)[0])[:16]
