"""Chunk-at-a-time encoding for HTTP streaming: float32 chunks in, playable bytes out as they are ready."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import soxr

from voiceforge.audio.encode import (
    AudioFormat,
    AvWriter,
    as_mono,
    check_sample_rate,
    codec_rate,
    parse_format,
    peak_safe,
    to_int16,
)

__all__ = ["StreamEncoder"]

# RIFF and data chunk sizes of a stream whose length is not known yet; ffmpeg, browsers and
# OpenAI's own streaming WAV use the same convention.
_UNKNOWN_SIZE = 0xFFFFFFFF


def wav_stream_header(sample_rate: int) -> bytes:
    """44-byte header of a mono 16-bit PCM WAV of unknown length."""
    fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        struct.pack("<4sI4s", b"RIFF", _UNKNOWN_SIZE, b"WAVE")
        + fmt_chunk
        + struct.pack("<4sI", b"data", _UNKNOWN_SIZE)
    )


class _Sink:
    """Write-only, non-seekable file for PyAV: muxers then emit bytes in order and never seek back."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class StreamEncoder:
    """Encode a signal delivered in chunks; each call returns the bytes that became ready.

    Every format streams: WAV as a header with unknown sizes followed by PCM, PCM as raw little-endian
    int16, FLAC/MP3/Opus/AAC through PyAV. Peak safety is per chunk: a chunk whose peak exceeds the
    format's ceiling is scaled down as a whole. A lossy stream that is closed without any samples produces
    no bytes at all (its containers cannot describe empty audio).
    """

    def __init__(
        self,
        fmt: AudioFormat | str,
        sample_rate: int,
        *,
        bitrate: int | None = None,
        pcm_rate: int | None = None,
    ) -> None:
        """``pcm_rate``: WAV and PCM at this rate instead of ``sample_rate`` (resampled as it streams)."""
        self.format = parse_format(fmt)
        check_sample_rate(sample_rate)
        self.sample_rate = sample_rate
        self._closed = False
        self._header: bytes = b""
        self._sink: _Sink | None = None
        self._writer: AvWriter | None = None
        self._resampler: soxr.ResampleStream | None = None
        if self.format in (AudioFormat.WAV, AudioFormat.PCM) and pcm_rate and pcm_rate != sample_rate:
            check_sample_rate(pcm_rate)
            self._resampler = soxr.ResampleStream(sample_rate, pcm_rate, 1, dtype="float64", quality="HQ")
        if self.format is AudioFormat.WAV:
            self._header = wav_stream_header(pcm_rate or sample_rate)
        elif self.format is not AudioFormat.PCM:
            rate = codec_rate(self.format, sample_rate)
            if rate != sample_rate:
                self._resampler = soxr.ResampleStream(sample_rate, rate, 1, dtype="float64", quality="HQ")
            self._sink = _Sink()
            self._writer = AvWriter(self.format, self._sink, rate, bitrate, streaming=True)

    def write(self, samples: Any) -> bytes:
        """Feed one chunk of mono float samples; returns the encoded bytes ready so far (may be empty)."""
        if self._closed:
            raise RuntimeError("StreamEncoder.write() called after close()")
        x = as_mono(samples)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return self._emit(x)

    def close(self) -> bytes:
        """Flush the encoder; returns the remaining bytes. Closing twice returns b"" the second time."""
        if self._closed:
            return b""
        self._closed = True
        out = b""
        if self._resampler is not None:
            out = self._emit(self._resampler.resample_chunk(np.zeros(0), last=True))
        if self._writer is None or self._sink is None:
            return out + self._take_header()
        self._writer.close()
        return out + self._sink.take()

    def _emit(self, x: Any) -> bytes:
        chunk = peak_safe(x, self.format.ceiling)
        if self._writer is None or self._sink is None:
            return self._take_header() + to_int16(chunk).astype("<i2").tobytes()
        # FLAC gets the same int16 conversion as a whole file, so both decode to identical samples.
        self._writer.write(to_int16(chunk) if self.format.lossless else chunk)
        return self._sink.take()

    def _take_header(self) -> bytes:
        header, self._header = self._header, b""
        return header
