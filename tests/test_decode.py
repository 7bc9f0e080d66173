"""decode() on the real clips, on re-encodes of them in every container a phone or browser sends, and on
broken, hostile and oversized input: anything it cannot use is InvalidInput, never another exception."""

from __future__ import annotations

import functools
import io
import struct
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from av.audio.stream import AudioStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from voiceforge.audio.decode import UNREADABLE, AudioTooLong, decode, measure, resample
from voiceforge.audio.encode import encode
from voiceforge.errors import InvalidInput

BASE = "en_prompt_f5.wav"  # 5.33 s, 24 kHz int16
# ADTS cannot say how much padding the encoder added (up to 2047 samples, 85 ms at 24 kHz); every other
# container here trims it, to within a frame.
DURATION_TOLERANCE_S = 0.1


def load(path: Path) -> tuple[NDArray[np.float32], int]:
    x: NDArray[np.float32]
    x, rate = soundfile.read(path, dtype="float32")
    return x, int(rate)


def wav(x: NDArray[np.floating], rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, x, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def av_encode(
    x: NDArray[np.float32], rate: int, fmt: str, codec: str, *, channels: int = 1, bit_rate: int = 0
) -> bytes:
    """Encode with PyAV into any container, ``channels`` copies of ``x``."""
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, AudioStream)
        if bit_rate:
            stream.bit_rate = bit_rate
        interleaved = np.repeat(x.astype(np.float32), channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def sndfile(x: NDArray[np.float32], rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, x, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def up(x: NDArray[np.float32], rate: int, to: int) -> NDArray[np.float32]:
    return resample(x, rate, to)


# Every container and sample format a prompt may arrive in, made from a 24 kHz mono clip, with the rate
# its decoder reports.
Variant = Callable[[NDArray[np.float32], int], bytes]
VARIANTS: dict[str, tuple[Variant, int]] = {
    "mp3": (lambda x, r: encode(x, r, "mp3"), 24000),
    "aac-adts": (lambda x, r: encode(x, r, "aac"), 24000),
    "m4a-aac": (lambda x, r: av_encode(x, r, "mp4", "aac"), 24000),
    "m4a-aac-stereo-44k": (lambda x, r: av_encode(up(x, r, 44100), 44100, "ipod", "aac", channels=2), 44100),
    "ogg-opus": (lambda x, r: encode(x, r, "opus"), 48000),
    "webm-opus": (lambda x, r: av_encode(up(x, r, 48000), 48000, "webm", "libopus"), 48000),
    "ogg-vorbis": (lambda x, r: sndfile(x, r, "OGG", "VORBIS"), 24000),
    "flac": (lambda x, r: sndfile(x, r, "FLAC", "PCM_16"), 24000),
    "wav-u8": (lambda x, r: wav(x, r, "PCM_U8"), 24000),
    "wav-24": (lambda x, r: wav(x, r, "PCM_24"), 24000),
    "wav-32": (lambda x, r: wav(x, r, "PCM_32"), 24000),
    "wav-float": (lambda x, r: wav(x, r, "FLOAT"), 24000),
    "wav-double": (lambda x, r: wav(x, r, "DOUBLE"), 24000),
    "wav-stereo": (lambda x, r: wav(np.stack([x, x], axis=1), r), 24000),
}


@functools.cache
def variant(shared_audio: Path, name: str) -> bytes:
    x, rate = load(shared_audio / BASE)
    return VARIANTS[name][0](x, rate)


def unreadable(data: bytes | Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        decode(data)
    assert str(caught.value) == UNREADABLE
    return caught.value


@pytest.mark.parametrize(
    "name", ["zh_prompt_cosyvoice.wav", "en_prompt_f5.wav", "en_ljspeech_LJ001-0001.wav",
             "en_ljspeech_LJ001-0002_short.wav"],
)  # fmt: skip
def test_real_clips_decode_exactly(
    shared_audio: Path, manifest: dict[str, dict[str, object]], name: str
) -> None:
    clip = manifest[name]
    audio = decode(shared_audio / name)
    reference, _ = load(shared_audio / name)
    assert audio.sample_rate == clip["sample_rate"]
    assert audio.duration_s == pytest.approx(clip["duration_s"], abs=0.01)
    assert (audio.channels, audio.container) == (1, "wav")
    assert audio.codec == ("pcm_f32" if "float32" in str(clip["encoding"]) else "pcm_s16")
    assert audio.samples.dtype == np.float32
    np.testing.assert_array_equal(audio.samples, reference)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_reencoded_variants_decode_to_the_same_length(shared_audio: Path, name: str) -> None:
    x, rate = load(shared_audio / BASE)
    audio = decode(variant(shared_audio, name))
    assert audio.sample_rate == VARIANTS[name][1]
    assert audio.duration_s == pytest.approx(x.size / rate, abs=DURATION_TOLERANCE_S)
    assert audio.samples.ndim == 1
    assert audio.samples.dtype == np.float32
    assert audio.channels == (2 if "stereo" in name else 1)
    # Lossy or not, it is the same recording: same level within a couple of dB.
    rms = float(np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2)))
    assert 20 * np.log10(rms / np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(0, abs=2)


@pytest.mark.parametrize(
    ("name", "container", "codec"),
    [("mp3", "mp3", "mp3"), ("aac-adts", "aac", "aac"), ("m4a-aac", "mp4", "aac"),
     ("ogg-opus", "ogg", "opus"), ("webm-opus", "webm", "opus"), ("ogg-vorbis", "ogg", "vorbis"),
     ("flac", "flac", "flac"), ("wav-u8", "wav", "pcm_u8"), ("wav-24", "wav", "pcm_s24"),
     ("wav-double", "wav", "pcm_f64")],
)  # fmt: skip
def test_container_and_codec_are_reported(shared_audio: Path, name: str, container: str, codec: str) -> None:
    audio = decode(variant(shared_audio, name))
    assert (audio.container, audio.codec) == (container, codec)


def test_lossless_variants_match_the_original(shared_audio: Path) -> None:
    x, _ = load(shared_audio / BASE)
    for name in ("flac", "wav-24", "wav-32", "wav-float", "wav-double", "wav-stereo"):
        np.testing.assert_allclose(decode(variant(shared_audio, name)).samples, x, atol=1e-6, err_msg=name)


def test_channels_are_averaged(shared_audio: Path) -> None:
    x, rate = load(shared_audio / BASE)
    audio = decode(wav(np.stack([x, np.zeros_like(x)], axis=1), rate, "FLOAT"))
    assert audio.channels == 2
    np.testing.assert_allclose(audio.samples, x / 2, atol=1e-7)


def test_nan_and_inf_become_zero() -> None:
    x = np.array([0.5, np.nan, np.inf, -np.inf, -0.5], dtype=np.float32)
    np.testing.assert_array_equal(decode(wav(x, 16000, "FLOAT")).samples, [0.5, 0, 0, 0, -0.5])


def test_the_file_name_is_never_trusted(shared_audio: Path, tmp_path: Path) -> None:
    path = tmp_path / "prompt.wav"
    path.write_bytes(variant(shared_audio, "mp3"))
    assert decode(path).container == "mp3"


def test_a_path_decodes_like_its_bytes(shared_audio: Path) -> None:
    path = shared_audio / BASE
    np.testing.assert_array_equal(decode(path).samples, decode(path.read_bytes()).samples)


def test_empty_input(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").touch()
    for data in (b"", tmp_path / "empty.wav"):
        with pytest.raises(InvalidInput, match=r"empty \(0 bytes\)"):
            decode(data)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read the audio file"):
        decode(tmp_path / "nope.wav")


def test_not_audio() -> None:
    unreadable(np.random.default_rng(0).bytes(4000))
    unreadable(b"<html><body>hello</body></html>")
    # Magic numbers alone do not make a file: sniffed containers with garbage after them. (Not AMR: its
    # frames carry no checksum, so any bytes after "#!AMR" decode, as noise.)
    magics = [
        b"RIFF\x00\x00\x00\x00WAVE",
        b"fLaC",
        b"OggS",
        b"\x1a\x45\xdf\xa3",
        b"caff",
        b"\xff\xfb\x90\x00",
    ]
    magics += [b"\x00\x00\x00\x20ftypM4A ", b"ID3\x04\x00\x00\x00\x00\x00\x00"]
    for magic in magics:
        unreadable(magic + np.random.default_rng(1).bytes(2000))


def test_zip_polyglots(shared_audio: Path) -> None:
    """A WAV with a zip archive glued on is the WAV (the archive is never opened); a zip is not audio."""
    wav = (shared_audio / BASE).read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../evil.sh", "rm -rf /")
    audio = decode(wav + archive.getvalue())
    assert abs(audio.duration_s - decode(wav).duration_s) < 0.05
    unreadable(archive.getvalue())
    unreadable(archive.getvalue() + wav)  # the WAV hidden after the archive is not sniffed either


def test_image_has_no_audio_stream() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    with pytest.raises(InvalidInput, match="PNG image and has no audio stream"):
        decode(png)


def test_video_without_sound_has_no_audio_stream() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(InvalidInput, match=r"no audio stream \(it holds only video\)"):
        decode(buffer.getvalue())


def test_truncated_wav(shared_audio: Path) -> None:
    data = (shared_audio / BASE).read_bytes()
    x, _ = load(shared_audio / BASE)
    # Cut inside the header: nothing to read.
    unreadable(data[:30])
    # A recording cut short (upload interrupted, app killed) is still that recording up to the cut, so it
    # decodes to what it holds; the first 100 bytes are a 44-byte header and 28 samples.
    np.testing.assert_array_equal(decode(data[:100]).samples, x[:28])
    half = decode(data[: 44 + x.size])  # half the int16 data
    assert half.samples.size == x.size // 2
    assert decode(data[:44]).samples.size == 0


def test_wav_header_claiming_more_than_it_holds(shared_audio: Path) -> None:
    data = bytearray((shared_audio / BASE).read_bytes())
    x, _ = load(shared_audio / BASE)
    assert data[36:40] == b"data"
    for claimed in (10**9, 0xFFFFFFFF):  # a lie, and the "unknown length" that streaming writers use
        data[40:44] = struct.pack("<I", claimed)
        np.testing.assert_array_equal(decode(bytes(data)).samples, x)


def test_truncated_compressed_files_decode_what_they_hold(shared_audio: Path) -> None:
    for name in ("mp3", "ogg-opus", "m4a-aac", "webm-opus", "flac"):
        data = variant(shared_audio, name)
        try:
            audio = decode(data[: len(data) // 2])
        except InvalidInput as e:  # an MP4 whose index sits at the end is unreadable without it
            assert name == "m4a-aac", f"{name}: {e}"
            continue
        assert 1.0 < audio.duration_s < 5.0, name


def test_too_long_is_refused_from_the_header(shared_audio: Path) -> None:
    for name in ("wav-24", "mp3", "m4a-aac", "ogg-opus", "flac"):
        with pytest.raises(AudioTooLong) as caught:
            decode(variant(shared_audio, name), max_duration_s=2.0)
        assert caught.value.duration_s == pytest.approx(5.33, abs=0.1), name
        assert caught.value.max_duration_s == 2.0
        assert str(caught.value) == f"audio is {caught.value.duration_s:.1f} s long; send at most 2 s"


def test_two_hour_sparse_wav_is_refused_without_reading_it(tmp_path: Path) -> None:
    rate, channels = 48000, 2
    size = rate * channels * 2 * 7200
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16
    ) + b"data" + struct.pack("<I", size)  # fmt: skip
    path = tmp_path / "two-hours.wav"
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + size)  # 1.4 GB on paper, nothing on disk
    started = time.monotonic()
    with pytest.raises(AudioTooLong) as caught:
        decode(path)
    assert time.monotonic() - started < 3  # decoding 10 minutes of it alone would take longer
    assert caught.value.duration_s == pytest.approx(7200)
    assert str(caught.value) == "audio is 7200.0 s long; send at most 600 s"


def flac_bomb(seconds: int, rate: int = 8000) -> bytes:
    """A FLAC of digital silence (about 2 KB a minute) whose header leaves the length blank."""
    buffer = io.BytesIO()
    minute = np.zeros(rate * 60, np.int16)
    with soundfile.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds // 60):
            out.write(minute)
        out.write(minute[: rate * (seconds % 60)])
    data = bytearray(buffer.getvalue())
    # STREAMINFO's 36-bit total-samples field: the low nibble of byte 21 and bytes 22-25; 0 is "unknown".
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    return bytes(data)


def test_decompression_bomb_stops_at_the_limit() -> None:
    bomb = flac_bomb(2 * 3600)
    assert len(bomb) < 300_000
    tagged = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bomb  # the ID3 tag sends it through ffmpeg instead
    for data in (bomb, tagged):
        started = time.monotonic()
        with pytest.raises(AudioTooLong) as caught:
            decode(data, max_duration_s=60)
        assert time.monotonic() - started < 3
        assert caught.value.duration_s is None
        assert str(caught.value) == "audio is longer than 60 s; send at most 60 s"
    # Only the limit refuses it: the same blank-length FLAC under the limit decodes in full.
    assert decode(flac_bomb(59), max_duration_s=60).duration_s == pytest.approx(59)
    assert decode(b"ID3\x04\x00\x00\x00\x00\x00\x00" + flac_bomb(59), max_duration_s=60).duration_s == 59


def silence_flac(seconds: int, rate: int, *, blank_length: bool = False) -> bytes:
    """Digital silence as FLAC (a few KB a second even at 384 kHz); optionally with a blank length."""
    buffer = io.BytesIO()
    second = np.zeros(rate, np.int16)
    with soundfile.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(second)
    data = bytearray(buffer.getvalue())
    if blank_length:
        data[21] &= 0xF0
        data[22:26] = bytes(4)
    return bytes(data)


def peak_bytes(work: Callable[[], object]) -> int:
    """The most memory Python and numpy held at once while ``work`` ran."""
    tracemalloc.start()
    try:
        work()
    except InvalidInput:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_high_rate_files_get_fewer_seconds() -> None:
    """Decoding costs per sample: above 96 kHz the duration limit shrinks with the rate, from the header."""
    dense = silence_flac(180, 384_000)  # 3 minutes, 69 M samples: 276 MB as float32
    started = time.monotonic()
    with pytest.raises(AudioTooLong) as caught:
        decode(dense, max_duration_s=300)
    assert time.monotonic() - started < 1  # refused from the header, nothing decoded
    assert str(caught.value) == (
        "audio is 180.0 s long at 384000 Hz; at that rate send at most 75 s, or resample it to 96 kHz "
        "or lower for up to 300 s"
    )
    assert caught.value.detail == {"duration_s": 180.0, "max_duration_s": 75.0, "sample_rate": 384_000}
    # At 96 kHz and below only the duration counts.
    assert decode(silence_flac(20, 96_000), max_duration_s=20).duration_s == 20


def test_a_blank_length_bomb_stops_at_the_sample_budget_before_it_inflates() -> None:
    """384 kHz with no length in the header: decoding stops at 60 s x 96 kHz of samples, and what is held
    is the 16 kHz output, never the file at its own rate."""
    bomb = silence_flac(120, 384_000, blank_length=True)  # 46 M samples: 184 MB as float32

    def work() -> None:
        with pytest.raises(AudioTooLong, match=r"longer than 15 s at 384000 Hz"):
            decode(bomb, max_duration_s=60, rate=16_000)

    assert peak_bytes(work) < 16 * 2**20


def test_measure_keeps_nothing() -> None:
    ten_minutes = silence_flac(600, 48_000)  # 28.8 M samples: 115 MB as float32
    info = measure(ten_minutes, max_duration_s=600)
    assert (info.container, info.codec, info.source_rate, info.channels) == ("flac", "flac", 48_000, 1)
    assert info.duration_s == 600
    assert peak_bytes(lambda: measure(ten_minutes, max_duration_s=600)) < 16 * 2**20
    with pytest.raises(AudioTooLong):
        measure(silence_flac(61, 8000, blank_length=True), max_duration_s=60)


@pytest.mark.parametrize("name", ["wav-24", "wav-stereo", "flac", "mp3", "ogg-opus"])
def test_resampled_while_decoding_matches_resampling_after(shared_audio: Path, name: str) -> None:
    data = variant(shared_audio, name)
    whole = decode(data)
    streamed = decode(data, rate=16_000)
    assert (streamed.sample_rate, streamed.source_rate) == (16_000, whole.sample_rate)
    assert streamed.duration_s == whole.duration_s
    np.testing.assert_allclose(
        streamed.samples, resample(whole.samples, whole.sample_rate, 16_000), atol=1e-5
    )
    with pytest.raises(InvalidInput, match="choose 1000–384000 Hz"):
        decode(data, rate=10)


@functools.cache
def seed_files(shared_audio: Path) -> list[bytes]:
    """Short real files in every container, for the fuzzer to damage."""
    x, rate = load(shared_audio / BASE)
    x = x[rate : rate + rate // 2]
    return [build(x, rate) for build, _ in VARIANTS.values()]


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_input_is_audio_or_invalid_input(shared_audio: Path, data: st.DataObject) -> None:
    seeds = seed_files(shared_audio)
    kind = data.draw(st.sampled_from(["random", "damaged", "truncated"]))
    if kind == "random":
        blob = data.draw(st.binary(min_size=0, max_size=4096))
    else:
        damaged = bytearray(data.draw(st.sampled_from(seeds)))
        if kind == "truncated":
            damaged = damaged[: data.draw(st.integers(0, len(damaged)))]
        else:
            for _ in range(data.draw(st.integers(1, 20))):
                # Headers hold the interesting fields, so most hits land in the first 256 bytes.
                limit = data.draw(st.sampled_from([min(256, len(damaged)), len(damaged)]))
                damaged[data.draw(st.integers(0, limit - 1))] = data.draw(st.integers(0, 255))
        blob = bytes(damaged)
    try:
        audio = decode(blob, max_duration_s=30)
    except InvalidInput:
        return
    assert audio.samples.dtype == np.float32
    assert np.isfinite(audio.samples).all()
    assert audio.duration_s <= 30 + 0.1


def test_resample() -> None:
    rate = 24000
    t = np.arange(rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert resample(x, rate, rate) is x
    y = resample(x, rate, 16000)
    assert y.dtype == np.float32
    assert y.size == 16000
    reference = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    np.testing.assert_allclose(y[200:-200], reference[200:-200], atol=1e-3)
    assert resample(np.zeros(0, np.float32), rate, 16000).size == 0
    with pytest.raises(InvalidInput, match="must be positive"):
        resample(x, 0, 16000)
