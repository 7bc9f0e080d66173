"""Request fields shared by the HTTP API, job requests and batch manifests, written once."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import Field

from voiceforge.asr.diarize import MAX_SPEAKERS
from voiceforge.engines.base import SEED_MAX, SEED_MIN, SPEED_MAX, SPEED_MIN
from voiceforge.errors import InvalidInput, TooLarge

Speed = Annotated[float, Field(ge=SPEED_MIN, le=SPEED_MAX, description="0.5 to 2.0; 1 is normal")]
Seed = Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX, description="1 to 100000000; same seed, same audio")]
Speakers = Annotated[
    int, Field(ge=1, le=MAX_SPEAKERS, description="how many speakers (implies diarize); default: estimated")
]
ModeName = Literal["zero_shot", "cross_lingual", "instruct", "preset"]
FormatName = Literal["wav", "mp3", "flac", "opus", "aac", "pcm"]


def decode_base64(value: str, field: str, limit: int) -> bytes:
    """Decode base64 (standard or URL-safe, with or without a ``data:`` prefix) within ``limit``."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    if len(value) * 3 // 4 > limit:
        raise TooLarge(
            f"{field} is about {len(value) * 3 // 4 // 1024} KiB; at most {limit // 1024} KiB is accepted "
            "(15 s of speech is far less; trim the recording)"
        )
    cleaned = "".join(value.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        data = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"{field} is not valid base64 ({e}); send the file's bytes base64-encoded") from e
    if not data:
        raise InvalidInput(f"{field} is empty; send a 3–15 s recording base64-encoded")
    return data
