"""Decode an uploaded recording in any common container to float32 mono at the file's own sample rate.

The container is sniffed from the bytes, never from a file name. libsndfile reads what it can (WAV in every
PCM/float flavour, FLAC, AIFF: fast and bit-exact); PyAV/ffmpeg reads the rest (MP3, M4A/AAC, Ogg/Opus,
Ogg/Vorbis, WebM, AMR, CAF). Only sniffed containers reach ffmpeg, each with its demuxer named, so ffmpeg
never guesses: its probing would also accept playlists (HLS, concat) that open other files or URLs.

Decoding is bounded before it allocates: a file may hold at most ``max_duration_s`` of audio, and less
above 96 kHz (``BUDGET_RATE``): at most ``max_duration_s`` × 96000 samples per channel, since the cost of
decoding is per sample. A declared length past that is refused before decoding; decoding stops as soon as
it is passed, so a two-hour file, or a tiny FLAC that inflates to 20 minutes at 384 kHz, costs no more
than the limit. Blocks are mixed to mono and, when ``rate`` asks for it, resampled (soxr, streaming) as
they are decoded: what is held is the output at the output rate, never the file at its own.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import av
import numpy as np
import soundfile
import soxr
from numpy.typing import NDArray

from voiceforge.errors import InvalidInput

__all__ = ["AudioInfo", "AudioTooLong", "DecodedAudio", "decode", "measure", "resample"]

log = logging.getLogger(__name__)

ACCEPTED = "WAV, MP3, M4A, Ogg/Opus, WebM or FLAC"
UNREADABLE = (
    f"could not decode the audio: the file is not a recognised audio format or is damaged; send {ACCEPTED}"
)
# Outside this range a header is damaged rather than unusual (telephony is 8 kHz, studio tops out at 384).
MIN_RATE, MAX_RATE = 1000, 384_000
# Samples read from libsndfile per call, summed over channels, so a header claiming 1000 channels cannot
# make one read allocate gigabytes.
_BLOCK_VALUES = 1 << 20
_UNKNOWN_FRAMES = 1 << 62
# Above this rate a file's duration limit shrinks in proportion: decoding costs per sample, and no speech
# recording needs more (a 384 kHz file may hold a quarter of the seconds a 96 kHz one may).
BUDGET_RATE = 96_000


def limit_s(max_duration_s: float, rate: int) -> float:
    """The seconds a file at ``rate`` Hz may hold under ``max_duration_s`` (see BUDGET_RATE)."""
    return max_duration_s * min(1.0, BUDGET_RATE / rate) if rate > 0 else max_duration_s


class AudioTooLong(InvalidInput):
    """The audio runs past its limit; ``duration_s`` is its declared length, or None if unknown.

    ``max_duration_s`` is the limit asked for; ``limit_s`` what it allows at the file's ``sample_rate``
    (less above BUDGET_RATE)."""

    def __init__(self, duration_s: float | None, max_duration_s: float, sample_rate: int = 0) -> None:
        self.duration_s = duration_s
        self.max_duration_s = max_duration_s
        self.sample_rate = sample_rate
        self.limit_s = limit_s(max_duration_s, sample_rate)
        detail: dict[str, Any] = {"duration_s": duration_s, "max_duration_s": self.limit_s}
        if self.limit_s < max_duration_s:
            detail["sample_rate"] = sample_rate
        super().__init__(f"audio {self.length}; {self.advice}", detail=detail)

    @property
    def length(self) -> str:
        at = f" at {self.sample_rate} Hz" if self.limit_s < self.max_duration_s else ""
        if self.duration_s is None:
            return f"is longer than {self.limit_s:g} s{at}"
        return f"is {self.duration_s:.1f} s long{at}"

    @property
    def advice(self) -> str:
        """What to send instead: at most the limit, and above BUDGET_RATE how to get the full one."""
        if self.limit_s >= self.max_duration_s:
            return f"send at most {self.max_duration_s:g} s"
        return (
            f"at that rate send at most {self.limit_s:g} s, or resample it to {BUDGET_RATE // 1000} kHz "
            f"or lower for up to {self.max_duration_s:g} s"
        )


@dataclass(frozen=True)
class AudioInfo:
    """What a file is: its container, codec, channels, own sample rate and length."""

    container: str
    codec: str
    channels: int
    source_rate: int
    duration_s: float


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples at ``sample_rate`` (the file's own rate unless another was asked for),
    with what the file was (``source_rate`` is its own rate)."""

    samples: NDArray[np.float32]
    sample_rate: int
    channels: int
    codec: str
    container: str
    duration_s: float
    source_rate: int


class _Sink:
    """Mono blocks as they are decoded: cleaned, resampled to ``rate`` (streaming), kept or counted."""

    def __init__(self, source_rate: int, rate: int | None, keep: bool) -> None:
        self.source_rate = source_rate
        self.rate = rate or source_rate
        self.keep = keep
        self.frames = 0  # at the source rate
        self.blocks: list[NDArray[np.float32]] = []
        self._stream = (
            soxr.ResampleStream(source_rate, self.rate, 1, dtype="float32", quality="HQ")
            if keep and self.rate != source_rate
            else None
        )

    def add(self, block: NDArray[np.float32]) -> None:
        self.frames += block.size
        if not self.keep:
            return
        # Float WAVs can hold NaN and inf; downstream maths (RMS, VAD, resampling) would spread them.
        np.nan_to_num(block, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        self.blocks.append(self._stream.resample_chunk(block) if self._stream is not None else block)

    def samples(self) -> NDArray[np.float32]:
        if self._stream is not None:
            self.blocks.append(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        samples = np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)
        self.blocks = []
        return np.asarray(samples, dtype=np.float32)


class _Format(NamedTuple):
    container: str
    demuxer: str  # ffmpeg's name for it
    libsndfile: bool


_WAV = _Format("wav", "wav", True)
_RF64 = _Format("rf64", "wav", True)
_AIFF = _Format("aiff", "aiff", True)
_FLAC = _Format("flac", "flac", True)
_FLAC_AFTER_ID3 = _Format("flac", "flac", False)
_OGG = _Format("ogg", "ogg", False)
_WEBM = _Format("webm", "matroska", False)
_MATROSKA = _Format("matroska", "matroska", False)
_MP4 = _Format("mp4", "mov", False)
_MP3 = _Format("mp3", "mp3", False)
_ADTS = _Format("aac", "aac", False)
_CAF = _Format("caf", "caf", False)
_AMR = _Format("amr", "amr", False)

# Top-level ISO BMFF boxes an MP4/M4A/3GP/QuickTime file starts with (ftyp is usual; old .mov may lack it).
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}
_IMAGES = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF"}

# libsndfile subtype -> ffmpeg codec name, so `codec` reads the same whichever library decoded the file.
_SUBTYPE_CODECS = {
    "PCM_U8": "pcm_u8", "PCM_S8": "pcm_s8", "PCM_16": "pcm_s16", "PCM_24": "pcm_s24", "PCM_32": "pcm_s32",
    "FLOAT": "pcm_f32", "DOUBLE": "pcm_f64", "ULAW": "pcm_mulaw", "ALAW": "pcm_alaw",
    "IMA_ADPCM": "adpcm_ima_wav", "MS_ADPCM": "adpcm_ms", "FLAC": "flac",
}  # fmt: skip
_DECODER_CODECS = {"mp3float": "mp3", "mp2float": "mp2", "aac_fixed": "aac", "libopus": "opus"}


def _sniff(f: IO[bytes]) -> _Format:
    f.seek(0)
    head = f.read(64)
    if head.startswith(b"ID3") and len(head) >= 10:
        # An ID3v2 tag (size is 4 syncsafe 7-bit bytes) may precede MP3, AAC or FLAC; look past it. ffmpeg
        # skips the tag itself; libsndfile may not, so a tagged FLAC goes to ffmpeg too.
        size = 10 + sum((head[6 + i] & 0x7F) << (7 * (3 - i)) for i in range(4))
        size += 10 if head[5] & 0x10 else 0
        f.seek(size)
        inner = f.read(64)
        if inner.startswith(b"fLaC"):
            return _FLAC_AFTER_ID3
        if _adts(inner):
            return _ADTS
        # Tagged MP3 frames may start after padding or junk that ffmpeg resynchronises over.
        return _MP3
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _WAV
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return _RF64
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _AIFF
    if head[:4] == b"fLaC":
        return _FLAC
    if head[:4] == b"OggS":
        return _OGG
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _WEBM if b"webm" in head else _MATROSKA
    if head[4:8] in _MP4_BOXES:
        return _MP4
    if head[:4] == b"caff":
        return _CAF
    if head[:5] == b"#!AMR":
        return _AMR
    if _adts(head):
        return _ADTS
    if _mpeg_audio(head):
        return _MP3
    kind = "WebP" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None
    kind = kind or next((name for magic, name in _IMAGES.items() if head.startswith(magic)), None)
    if kind:
        raise InvalidInput(
            f"the file is a {kind} image and has no audio stream; send a recording: {ACCEPTED}",
            detail={"container": kind.lower()},
        )
    raise InvalidInput(UNREADABLE)


def _adts(head: bytes) -> bool:
    return len(head) >= 7 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0 and (head[2] >> 2) & 0xF < 13


def _mpeg_audio(head: bytes) -> bool:
    # Frame sync, then reject the reserved version, layer, bitrate and sample-rate codes, so random bytes
    # that happen to start with 0xFFE are not taken for MP3.
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3


def _check_rate(rate: int, fmt: _Format) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidInput(UNREADABLE, detail={"container": fmt.container, "sample_rate": rate})


def _finish(sink: _Sink, channels: int, codec: str, fmt: _Format) -> tuple[AudioInfo, _Sink]:
    info = AudioInfo(fmt.container, codec, channels, sink.source_rate, sink.frames / sink.source_rate)
    return info, sink


def _decode_libsndfile(
    f: IO[bytes], fmt: _Format, max_duration_s: float, rate: int | None, keep: bool
) -> tuple[AudioInfo, _Sink]:
    f.seek(0)
    with soundfile.SoundFile(f) as sf:
        source_rate, channels = int(sf.samplerate), int(sf.channels)
        _check_rate(source_rate, fmt)
        # libsndfile clamps a WAV header's data size to what the file holds, so `frames` is what can be read;
        # refusing on it costs nothing, whether the file is two hours of real data or a sparse one.
        # A FLAC whose STREAMINFO leaves the length blank reads as SF_COUNT_MAX frames: unknown, not long.
        limit = math.floor(limit_s(max_duration_s, source_rate) * source_rate)
        if sf.frames < _UNKNOWN_FRAMES and sf.frames > limit:
            raise AudioTooLong(sf.frames / source_rate, max_duration_s, source_rate)
        block = max(1, _BLOCK_VALUES // channels)
        sink = _Sink(source_rate, rate, keep)
        while True:
            frames = sf.read(min(block, limit + 1 - sink.frames), dtype="float32", always_2d=True)
            if not len(frames):
                break
            sink.add(frames.mean(axis=1, dtype=np.float32) if channels > 1 else frames[:, 0].copy())
            if sink.frames > limit:
                raise AudioTooLong(None, max_duration_s, source_rate)
        codec = "flac" if sf.format == "FLAC" else _SUBTYPE_CODECS.get(sf.subtype, sf.subtype.lower())
    return _finish(sink, channels, codec, fmt)


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


def _codec_name(decoder: str) -> str:
    """ffmpeg's decoder name as the codec's name (``mp3float`` is MP3), PCM without its byte order."""
    if decoder.startswith("pcm_") and decoder.endswith(("le", "be")):
        return decoder[:-2]
    return _DECODER_CODECS.get(decoder, decoder)


def _frames(container: Any, stream: Any) -> Iterator[Any]:
    """Decoded frames; a damaged packet is skipped (as ffmpeg does), a damaged or cut-off file ends early."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.FFmpegError as e:
            log.warning("audio ends early at a damaged or truncated packet: %s", e)
            break
        try:
            yield from stream.decode(packet)
        except av.FFmpegError as e:
            log.debug("skipping an undecodable packet: %s", e)


def _decode_ffmpeg(
    f: IO[bytes], fmt: _Format, max_duration_s: float, rate: int | None, keep: bool
) -> tuple[AudioInfo, _Sink]:
    f.seek(0)
    with av.open(f, "r", format=fmt.demuxer) as container:
        if not container.streams.audio:
            what = "only video" if container.streams.video else "no audio"
            raise InvalidInput(
                f"the file has no audio stream (it holds {what}); send a recording with sound: {ACCEPTED}",
                detail={"container": fmt.container},
            )
        stream = container.streams.audio[0]
        declared = _declared_duration(container, stream)
        header_rate = int(getattr(stream, "sample_rate", 0) or 0)  # no codec context: PyAV has none to give
        if declared is not None and declared > limit_s(max_duration_s, header_rate):
            raise AudioTooLong(declared, max_duration_s, header_rate)
        if stream.codec_context is None:  # ffmpeg knows the container but has no decoder for the codec
            raise InvalidInput(UNREADABLE, detail={"container": fmt.container})
        codec = _codec_name(stream.codec_context.name)
        resampler: Any = None
        sink: _Sink | None = None
        channels = limit = 0
        for frame in _frames(container, stream):
            if resampler is None or sink is None:
                # Pinned to the first frame's rate and layout: a stream that changes either midway (chained
                # MP3s, AAC with SBR switching) is converted rather than spliced at the wrong speed.
                source_rate, channels = int(frame.sample_rate), int(frame.layout.nb_channels)
                _check_rate(source_rate, fmt)
                limit = math.floor(limit_s(max_duration_s, source_rate) * source_rate)
                sink = _Sink(source_rate, rate, keep)
                # Packed, not planar: PyAV reads planes past the eighth out of bounds (a crash, found by
                # fuzzing a float WAV that claimed 45 channels).
                resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=source_rate)
            for out in resampler.resample(frame):
                sink.add(_mono(out, channels))
            if sink.frames > limit:
                raise AudioTooLong(declared, max_duration_s, sink.source_rate)
        if resampler is None or sink is None:
            raise InvalidInput(UNREADABLE, detail={"container": fmt.container, "codec": codec})
        for out in resampler.resample(None):
            sink.add(_mono(out, channels))
    return _finish(sink, channels, codec, fmt)


def _mono(frame: Any, channels: int) -> NDArray[np.float32]:
    interleaved: NDArray[np.float32] = frame.to_ndarray().reshape(-1, channels)
    return interleaved.mean(axis=1, dtype=np.float32) if channels > 1 else interleaved[:, 0]


def _open(data: bytes | Path) -> IO[bytes]:
    if not isinstance(data, Path):
        return io.BytesIO(data)
    try:
        return data.open("rb")
    except OSError as e:
        raise InvalidInput(f"cannot read the audio file {data}: {e.strerror}") from e


def decode(data: bytes | Path, *, max_duration_s: float = 600.0, rate: int | None = None) -> DecodedAudio:
    """Decode ``data`` (file contents or a path) to float32 mono, channels averaged, at ``rate``
    (resampled as it is decoded) or, by default, at the file's own rate.

    Raises :class:`InvalidInput` for empty, unrecognised, damaged or audio-less input and
    :class:`AudioTooLong` (a subclass) past ``max_duration_s`` (less above 96 kHz, see the module
    docstring). A file cut short decodes to what it holds.
    """
    if rate is not None and not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidInput(f"rate is {rate} Hz; choose {MIN_RATE}–{MAX_RATE} Hz")
    info, sink = _run(data, max_duration_s, rate, keep=True)
    samples = sink.samples()
    return DecodedAudio(
        samples, sink.rate, info.channels, info.codec, info.container, info.duration_s, info.source_rate
    )


def measure(data: bytes | Path, *, max_duration_s: float = 600.0) -> AudioInfo:
    """What :func:`decode` would find, keeping no samples: the file is decoded to its end (so damage
    and the duration limit are found), at the cost of CPU only."""
    return _run(data, max_duration_s, None, keep=False)[0]


def _run(
    data: bytes | Path, max_duration_s: float, rate: int | None, *, keep: bool
) -> tuple[AudioInfo, _Sink]:
    if not max_duration_s > 0:
        raise InvalidInput(f"max_duration_s is {max_duration_s}; it must be positive")
    with _open(data) as f:
        if not f.seek(0, io.SEEK_END):
            raise InvalidInput(f"the audio file is empty (0 bytes); send a recording: {ACCEPTED}")
        fmt = _sniff(f)
        if fmt.libsndfile:
            try:
                return _decode_libsndfile(f, fmt, max_duration_s, rate, keep)
            except (RuntimeError, ValueError) as e:
                # Codecs libsndfile lacks (e.g. MP3 or GSM inside a WAV) may still be ffmpeg's.
                log.debug("libsndfile cannot read this %s (%s); trying ffmpeg", fmt.container, e)
        try:
            return _decode_ffmpeg(f, fmt, max_duration_s, rate, keep)
        except (av.FFmpegError, ValueError, EOFError) as e:
            raise InvalidInput(UNREADABLE, detail={"container": fmt.container}) from e


def resample(samples: NDArray[np.floating[Any]], src_rate: int, dst_rate: int) -> NDArray[np.float32]:
    """``samples`` (1-D) at ``dst_rate`` as float32, by soxr's HQ filter; a float32 view when rates match."""
    if src_rate <= 0 or dst_rate <= 0:
        raise InvalidInput(f"sample rates must be positive; got {src_rate} Hz -> {dst_rate} Hz")
    x = np.asarray(samples, dtype=np.float32)
    if src_rate == dst_rate or not x.size:
        return x
    return np.asarray(soxr.resample(x, src_rate, dst_rate, quality="HQ"), dtype=np.float32)
