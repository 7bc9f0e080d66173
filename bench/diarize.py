"""Diarization error rate on conversations built from ../shared/audio, one run.

    python bench/diarize.py [--audio ../shared/audio]

Three speakers (the CosyVoice zh prompt, the F5 en prompt, the LJ Speech reader) take turns in two
mixtures whose true boundaries are known, since we place each piece ourselves: "long turns" (whole
clips and halves, 2–5 s) and "short turns" (1–2 s pieces). The reference marks the speech inside
each placed piece (silero VAD on the piece alone), so the error is mostly speaker confusion; missed
speech and false alarms are printed apart. Prints JSON: DER (10 ms frames, 0.25 s collar) with the
speaker count given and estimated, the estimated count, the threshold sweep that chose
``diarize.THRESHOLD`` (on these same mixtures: there is no held-out set yet), and seconds per
audio second. All three speakers are women, the hard case for a speaker encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from voiceforge.asr import diarize as d
from voiceforge.audio.vad import VAD_RATE, speech_segments
from voiceforge.voices.embedding import SpeakerEncoder

CLIPS = {0: "zh_prompt_cosyvoice.wav", 1: "en_prompt_f5.wav", 2: "en_ljspeech_LJ001-0001.wav"}
SHORT_LJ = "en_ljspeech_LJ001-0002_short.wav"  # the LJ reader again, another sentence


def load(folder: Path, name: str) -> np.ndarray:
    audio, rate = soundfile.read(folder / name, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, VAD_RATE).astype(np.float32)


def mixture(pieces: list[tuple[int, np.ndarray]], gaps: list[float]) -> tuple[np.ndarray, list[d.Turn]]:
    """Pieces laid end to end with the given gaps; the reference is each piece's own speech."""
    out, reference, t = [], [], 0.0
    for (speaker, audio), gap in zip(pieces, gaps, strict=True):
        for start, end in speech_segments(audio):
            reference.append(d.Turn(t + start, t + end, speaker))
        out += [audio, np.zeros(int(gap * VAD_RATE), dtype=np.float32)]
        t += len(audio) / VAD_RATE + gap
    return np.concatenate(out), reference


def cut(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[int(start * VAD_RATE) : int(end * VAD_RATE)]


def components(reference: list[d.Turn], hypothesis: list[d.Turn]) -> dict[str, float]:
    return {
        "der": round(d.error_rate(reference, hypothesis), 4),
        "der_no_collar": round(d.error_rate(reference, hypothesis, collar=0.0), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default = os.environ.get(
        "VOICEFORGE_SHARED_AUDIO", str(Path(__file__).parents[1].parent / "shared/audio")
    )
    parser.add_argument("--audio", type=Path, default=Path(default))
    args = parser.parse_args()
    zh, f5, lj = (load(args.audio, CLIPS[i]) for i in range(3))
    lj2 = load(args.audio, SHORT_LJ)
    mixtures = {
        "long_turns": mixture(
            [
                (0, zh),
                (1, cut(f5, 0, 2.75)),
                (2, cut(lj, 0, 4.9)),
                (1, cut(f5, 2.75, 5.4)),
                (2, lj2),
                (2, cut(lj, 4.9, 9.7)),
            ],
            [0.5, 0.7, 0.4, 0.8, 0.5, 0.0],
        ),
        "short_turns": mixture(
            [
                (2, cut(lj, 0, 1.9)),
                (0, cut(zh, 0, 1.8)),
                (1, cut(f5, 0, 1.5)),
                (2, cut(lj, 1.9, 3.7)),
                (0, cut(zh, 1.8, 3.5)),
                (1, cut(f5, 1.5, 3.2)),
                (2, lj2),
                (1, cut(f5, 3.2, 5.4)),
            ],
            [0.3, 0.4, 0.3, 0.5, 0.3, 0.4, 0.3, 0.0],
        ),
    }
    encoder = SpeakerEncoder.load()
    report: dict[str, object] = {"threshold": d.THRESHOLD, "speakers_true": 3}
    for name, (audio, reference) in mixtures.items():
        started = time.perf_counter()
        estimated = d.diarize(audio, encoder)
        seconds = time.perf_counter() - started
        given = d.diarize(audio, encoder, speakers=3)
        report[name] = {
            "audio_s": round(len(audio) / VAD_RATE, 2),
            "turns_true": len(reference),
            "speakers_estimated": len({t.speaker for t in estimated}),
            "estimated": components(reference, estimated),
            "count_given": components(reference, given),
            "seconds_per_audio_s": round(seconds / (len(audio) / VAD_RATE), 3),
        }
    sweep = {}
    for threshold in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6):
        d.THRESHOLD = threshold
        sweep[str(threshold)] = {
            name: [d.error_rate(ref, hyp := d.diarize(audio, encoder)), len({t.speaker for t in hyp})]
            for name, (audio, ref) in mixtures.items()
        }
        sweep[str(threshold)] = {k: [round(v[0], 4), v[1]] for k, v in sweep[str(threshold)].items()}
    report["threshold_sweep_der_and_count"] = sweep
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
