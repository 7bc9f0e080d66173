"""Voice files from outside: zips read within bounds, recordings re-encoded as WAV, profiles
checked before numpy parses them. Everything an import or an upload of a voice touches passes here
(voices/library.py), so no crafted zip, array header or container reaches further.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
import zlib

import numpy as np

from voiceforge.audio.decode import decode
from voiceforge.audio.encode import AudioFormat, encode
from voiceforge.errors import InvalidInput
from voiceforge.voices.profile import VoiceProfile

MAX_PROFILE_BYTES = 16 * 1024 * 1024  # total uncompressed arrays inside a profile .npz (~0.6 MB real)
MAX_PROMPT_S = 60.0  # the longest recording enrollment takes (audio/prompt.py), so the longest stored
_SAFE_ZIP = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # bz2/lzma decompress without a size bound
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, zlib.error)
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_zip(data: bytes, limit: int, what: str) -> dict[str, bytes]:
    """Members of a zip by name, read with bounds: no duplicates, <= limit bytes uncompressed in all."""
    if not isinstance(data, bytes | bytearray) or len(data) > limit:
        raise InvalidInput(f"the {what} must be a zip of at most {limit // 2**20} MB")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            if len(names) > 16 or len(set(names)) != len(names):  # names are only ever dict keys here
                raise InvalidInput(f"the {what} holds unexpected members {names[:8]!r}")
            if any(i.compress_type not in _SAFE_ZIP or i.flag_bits & 1 for i in infos):
                raise InvalidInput(f"the {what} uses encryption or an unsupported compression")
            if sum(i.file_size for i in infos) > limit:
                raise InvalidInput(f"the {what} unpacks to more than {limit // 2**20} MB")
            out: dict[str, bytes] = {}
            for info in infos:  # ZipExtFile never yields more than file_size; checked again here
                with z.open(info) as f:
                    out[info.filename] = f.read(limit + 1)
                limit -= len(out[info.filename])
                if limit < 0:
                    raise InvalidInput(f"the {what} unpacks to more than its stated size")
            return out
    except _ZIP_ERRORS as e:
        raise InvalidInput(f"the {what} is not a readable zip ({e})") from e


def as_wav(data: bytes, what: str) -> bytes:
    """``data`` decoded (mono, its own rate) and written again as 16-bit WAV; InvalidInput naming
    ``what`` when it is not audio that decodes."""
    try:
        audio = decode(data, max_duration_s=MAX_PROMPT_S)
        return encode(audio.samples, audio.sample_rate, AudioFormat.WAV)
    except InvalidInput as e:
        raise InvalidInput(
            f"{what} is not audio that decodes ({e.message}); a voice keeps only a recording "
            f"(WAV, FLAC, MP3, Ogg, WebM, M4A) of at most {MAX_PROMPT_S:g} s",
            detail=e.detail,
        ) from e


def load_profile(data: bytes) -> VoiceProfile:
    """VoiceProfile.from_bytes behind bounds: the .npz is itself a zip whose arrays state their size."""
    arrays = read_zip(data, MAX_PROFILE_BYTES, "voice profile")
    for name, blob in arrays.items():
        try:
            f = io.BytesIO(blob)
            read_header = _NPY_HEADERS[np.lib.format.read_magic(f)]
            shape, _, dtype = read_header(f)
        except (KeyError, ValueError, TypeError, SyntaxError) as e:
            raise InvalidInput(f"profile.npz member {name!r} is not a numpy array ({e})") from e
        if dtype.hasobject or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > len(blob):
            raise InvalidInput(f"profile.npz member {name!r} states a shape its data does not have")
    try:
        profile = VoiceProfile.from_bytes(bytes(data))
    except (TypeError, MemoryError) as e:  # unexpected fields in the profile's metadata
        raise InvalidInput(f"not a voiceforge voice profile ({e}); export it again from voiceforge") from e
    values = (getattr(profile, f.name) for f in dataclasses.fields(profile))
    if not all(np.isfinite(v).all() for v in values if isinstance(v, np.ndarray)):
        raise InvalidInput("the voice profile holds NaN or infinite values; enroll the voice again")
    texts = {"engine": 64, "language": 16, "transcript": 10_000}  # the column sizes, and then some
    if not all(
        isinstance(getattr(profile, k), str) and len(getattr(profile, k)) <= n for k, n in texts.items()
    ):
        raise InvalidInput("the voice profile's engine, language or transcript is not short text")
    return profile
