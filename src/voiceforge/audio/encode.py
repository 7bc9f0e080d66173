"""Turn float samples from an engine into bytes a client can play: WAV, FLAC, MP3, Ogg/Opus, AAC, raw PCM.

Output is always mono and never clips: every path goes through :func:`peak_safe`. Lossless formats are
written with soundfile (raw numpy for PCM), the lossy ones with PyAV. ``StreamEncoder`` in
:mod:`voiceforge.audio.stream` is the chunk-at-a-time counterpart for HTTP streaming.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pyloudnorm
import soundfile
import soxr
from av.audio.stream import AudioStream
from numpy.typing import NDArray

from voiceforge.errors import InvalidInput, Unsupported

__all__ = ["AudioFormat", "encode", "normalize_loudness", "parse_format", "peak_safe"]

log = logging.getLogger(__name__)

DEFAULT_CEILING = 0.98
# Lossy codecs overshoot the input peak on decode (Opus +2 % on a 440 Hz sine at 0.98, +10 % on a sweep),
# so they get the -1 dBFS headroom that EBU R128 / AES TD1004 recommend for lossy delivery.
LOSSY_CEILING = 10 ** (-1 / 20)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
MIN_LUFS, MAX_LUFS = -70.0, -5.0


class AudioFormat(StrEnum):
    WAV = "wav"
    FLAC = "flac"
    MP3 = "mp3"
    OPUS = "opus"
    AAC = "aac"
    PCM = "pcm"

    @property
    def mime_type(self) -> str:
        return _MIME_TYPES[self]

    @property
    def extension(self) -> str:
        """File extension without the dot; ``opus`` is Ogg/Opus and ``aac`` is ADTS."""
        return self.value

    @property
    def lossless(self) -> bool:
        return self in (AudioFormat.WAV, AudioFormat.FLAC, AudioFormat.PCM)

    @property
    def ceiling(self) -> float:
        """Peak level output in this format is held to."""
        return DEFAULT_CEILING if self.lossless else LOSSY_CEILING


_MIME_TYPES = {
    AudioFormat.WAV: "audio/wav",
    AudioFormat.FLAC: "audio/flac",
    AudioFormat.MP3: "audio/mpeg",
    AudioFormat.OPUS: "audio/ogg",
    AudioFormat.AAC: "audio/aac",
    # Not audio/L16: RFC 2586 defines L16 as big-endian, and this is little-endian int16.
    AudioFormat.PCM: "application/octet-stream",
}
_ALIASES = {"ogg": AudioFormat.OPUS}


def parse_format(name: str) -> AudioFormat:
    """Format from a user-supplied name, case-insensitive (``ogg`` means Ogg/Opus)."""
    key = str(name).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return AudioFormat(key)
    except ValueError:
        choices = ", ".join(f.value for f in AudioFormat)
        raise InvalidInput(f"unknown audio format {name!r}; choose one of {choices}") from None


def check_sample_rate(sample_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidInput(
            f"sample rate {sample_rate} Hz is out of range; "
            f"choose between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz"
        )


def as_mono(samples: Any) -> NDArray[np.float64]:
    """A float64 1-D copy of ``samples`` with NaN and ±inf set to 0."""
    x = np.asarray(samples)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise InvalidInput(f"expected mono audio as a 1-D array; got shape {x.shape} (mix down first)")
    if not np.issubdtype(x.dtype, np.floating):
        raise InvalidInput(
            f"expected floating-point samples in [-1, 1]; got {x.dtype} (divide int16 PCM by 32768)"
        )
    # float128 values beyond float64's range become inf here, and then 0 like any other inf.
    with np.errstate(over="ignore", invalid="ignore"):
        wide = x.astype(np.float64)
    return np.nan_to_num(wide, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def peak_safe(samples: Any, ceiling: float = DEFAULT_CEILING) -> NDArray[np.float32]:
    """Float32 mono copy, scaled down as a whole only if its peak exceeds ``ceiling``; NaN/inf become 0."""
    if not 0.0 < ceiling <= 1.0:
        raise InvalidInput(f"peak ceiling {ceiling} is out of range; choose a value in (0, 1]")
    x = as_mono(samples)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > ceiling:
        log.debug("peak %.3g above ceiling %.3g; scaling down", peak, ceiling)
        # Divide first: ceiling / peak underflows to a subnormal for peaks near float64's maximum.
        x /= peak
        x *= ceiling
    out = x.astype(np.float32)
    # float32(0.98) is a hair above 0.98; clip to the largest float32 at or below the ceiling.
    limit = np.float32(ceiling)
    if limit > ceiling:
        limit = np.nextafter(limit, np.float32(0))
    return np.clip(out, -limit, limit, out=out)


def normalize_loudness(samples: Any, sample_rate: int, target_lufs: float) -> NDArray[np.float32]:
    """Gain to ``target_lufs`` integrated loudness (ITU-R BS.1770, via pyloudnorm), then :func:`peak_safe`.

    Input shorter than one 0.4 s gating block, or silent, is returned unchanged (but peak-safe). When the
    gain would push peaks past the ceiling, the ceiling wins and the result is quieter than the target.
    """
    if not MIN_LUFS <= target_lufs <= MAX_LUFS:
        raise InvalidInput(
            f"loudness target {target_lufs} LUFS is out of range; choose between {MIN_LUFS:g} and "
            f"{MAX_LUFS:g} LUFS (-16 suits speech on the web, -23 is EBU R128 broadcast)"
        )
    check_sample_rate(sample_rate)
    x = as_mono(samples)
    meter = pyloudnorm.Meter(sample_rate)
    if x.size < meter.block_size * sample_rate:
        return peak_safe(x)
    measured = float(meter.integrated_loudness(x))
    if not np.isfinite(measured):
        return peak_safe(x)
    return peak_safe(x * 10 ** ((target_lufs - measured) / 20))


def to_int16(x: NDArray[np.float32]) -> NDArray[np.int16]:
    return np.round(x * 32767.0).astype(np.int16)


@dataclass(frozen=True)
class _Codec:
    codec: str
    container: str
    sample_format: str
    default_bitrate: int
    bitrate_range: tuple[int, int]
    # Rates the encoder accepts; anything else is resampled to the nearest one above.
    rates: tuple[int, ...] = ()
    options: tuple[tuple[str, str], ...] = ()


# Default bitrates are for mono speech. MP3 and AAC clamp a bitrate above what the sample rate allows.
_CODECS = {
    AudioFormat.MP3: _Codec(
        "libmp3lame", "mp3", "fltp", 64_000, (8_000, 320_000),
        rates=(8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    ),
    # Below 48 kbit/s a -1 dBFS sweep decodes to peaks of 1.49 (hybrid SILK/CELT mode); at 48 it stays
    # under 0.99. Speech sounds fine either way.
    AudioFormat.OPUS: _Codec("libopus", "ogg", "flt", 48_000, (6_000, 256_000), rates=(48000,)),
    AudioFormat.AAC: _Codec(
        "aac", "adts", "fltp", 64_000, (8_000, 320_000),
        rates=(8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000),
        # ffmpeg's default "twoloop" coder overshoots tone onsets (1.3-1.7 decoded from a 0.89 sine) and
        # scores 18-26 dB SNR on the speech fixtures at 64 kbit/s. "fast" holds peaks within 1 % and scores
        # 24-32 dB, but it saturates on loud pure tones (about 10 dB SNR), which speech does not contain.
        options=(("aac_coder", "fast"),),
    ),
    # Only streaming uses PyAV for FLAC; whole files go through soundfile.
    AudioFormat.FLAC: _Codec("flac", "flac", "s16", 0, (0, 0)),
}  # fmt: skip


def codec_rate(fmt: AudioFormat, sample_rate: int) -> int:
    """The rate ``fmt`` is encoded at for input at ``sample_rate``."""
    rates = _CODECS[fmt].rates if fmt in _CODECS else ()
    if not rates or sample_rate in rates:
        return sample_rate
    return min((r for r in rates if r >= sample_rate), default=max(rates))


class AvWriter:
    """A PyAV output container holding one mono stream, fed float32 or int16 samples at :func:`codec_rate`."""

    def __init__(
        self, fmt: AudioFormat, file: Any, rate: int, bitrate: int | None, *, streaming: bool
    ) -> None:
        spec = _CODECS[fmt]
        low, high = spec.bitrate_range
        if spec.default_bitrate and bitrate is not None and not low <= bitrate <= high:
            raise InvalidInput(f"bitrate {bitrate} is out of range for {fmt}; choose {low}–{high} bit/s")
        # Nobody edits tags in place here, so the 8 KiB of padding ffmpeg reserves for that is waste.
        options = {"metadata_header_padding": "0"} if spec.container == "flac" else {}
        if streaming:
            # Hand each packet to the caller at once rather than when PyAV's 32 KiB buffer fills, and cut
            # Ogg pages every 100 ms instead of every second (~1 kbit/s of page overhead).
            options["flush_packets"] = "1"
            if spec.container == "ogg":
                options["page_duration"] = "100000"
        self._lossless = fmt.lossless
        self._rate = rate
        self._pts = 0
        try:
            self._container = av.open(file, "w", format=spec.container, container_options=options)
        except ValueError as e:
            raise Unsupported(
                f"this PyAV build cannot write {spec.container} files, so {fmt} is unavailable"
            ) from e
        try:
            stream = self._container.add_stream(spec.codec, rate=rate, options=dict(spec.options))
        except (av.FFmpegError, ValueError) as e:
            self._container.close()
            raise Unsupported(
                f"this PyAV build has no {spec.codec} encoder, so {fmt} output is unavailable "
                "(install the av wheels from PyPI)"
            ) from e
        assert isinstance(stream, AudioStream), f"{spec.codec} is not an audio codec"
        self._stream = stream
        self._stream.layout = "mono"
        self._stream.format = spec.sample_format
        if spec.default_bitrate:
            self._stream.bit_rate = bitrate or spec.default_bitrate

    def write(self, x: NDArray[np.float32] | NDArray[np.int16]) -> None:
        if not x.size:
            return
        sample_format = "s16" if x.dtype == np.int16 else "flt"
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format=sample_format, layout="mono")
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._pts
        self._pts += x.size
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        try:
            if self._pts:
                self._container.mux(self._stream.encode(None))
            elif self._lossless:
                # A header-only FLAC is a valid empty file; Ogg, MP3 and ADTS have no such thing.
                self._container.start_encoding()
        finally:
            self._container.close()


def encode(
    samples: Any,
    sample_rate: int,
    fmt: AudioFormat | str,
    *,
    loudness_lufs: float | None = None,
    bitrate: int | None = None,
) -> bytes:
    """Encode mono float samples as a complete file in ``fmt``, peak-safe, optionally loudness-normalised.

    WAV and FLAC are 16-bit, PCM is raw little-endian int16; ``bitrate`` (bit/s) applies to MP3, Opus and
    AAC only. Opus is always 48 kHz. Empty input gives an empty WAV/FLAC/PCM file; the lossy containers
    cannot hold zero samples, so for them it is :class:`InvalidInput`.
    """
    fmt = parse_format(fmt)
    check_sample_rate(sample_rate)
    x: NDArray[Any] = as_mono(samples)
    if loudness_lufs is not None:
        x = normalize_loudness(x, sample_rate, loudness_lufs)
    if fmt is AudioFormat.PCM:
        return to_int16(peak_safe(x, fmt.ceiling)).astype("<i2").tobytes()
    # libsndfile writes zero bytes for an empty FLAC, so that one case goes through ffmpeg below.
    if fmt is AudioFormat.WAV or (fmt is AudioFormat.FLAC and x.size):
        buffer = io.BytesIO()
        pcm = to_int16(peak_safe(x, fmt.ceiling))
        soundfile.write(buffer, pcm, sample_rate, format=fmt.value.upper(), subtype="PCM_16")
        return buffer.getvalue()
    if not x.size and not fmt.lossless:
        raise InvalidInput(f"cannot encode empty audio as {fmt}; choose wav, flac or pcm for empty output")
    rate = codec_rate(fmt, sample_rate)
    if rate != sample_rate:
        x = soxr.resample(x, sample_rate, rate, quality="HQ")
    # Seekable output lets the MP3 muxer write its LAME tag, which tells decoders to trim encoder padding.
    buffer = io.BytesIO()
    writer = AvWriter(fmt, buffer, rate, bitrate, streaming=False)
    try:
        writer.write(peak_safe(x, fmt.ceiling))
    finally:
        writer.close()
    return buffer.getvalue()
