"""Cloning quality on real recordings: speaker similarity on unseen sentences, intelligibility,
enrollment time, synthesis RTF. JSON out.

    python bench/cloning.py [--clips DIR_WITH_manifest.json]

For each clip: SIM (Resemblyzer cosine) between the prompt and speech the cloning never saw,
for (a) the stock voice enrollment chose as its base, (b) statistics-only conversion of it and
(c) the enrolled profile (with its frame map where enrollment chose one); CER of the Chinese and
WER of the English sentences for (a) and (c) by the bundled Whisper; where the manifest has a
second recording of the same speaker, SIM against that one too (guards against optimising the
judge on the prompt itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soxr

from voiceforge.asr.scoring import cer, wer
from voiceforge.asr.whisper import Transcriber
from voiceforge.audio.decode import decode
from voiceforge.audio.prompt import prepare_prompt
from voiceforge.config import Settings
from voiceforge.engines.base import Mode, SynthesisRequest, synthesize
from voiceforge.engines.kokoro import KokoroEngine
from voiceforge.engines.kokoro.enroll import Enroller
from voiceforge.errors import InvalidInput
from voiceforge.voices.embedding import SpeakerEncoder, similarity
from voiceforge.voices.profile import VoiceProfile

UNSEEN = {
    "zh": ["今天天气很好，我们一起去公园散步吧。", "请在下一个路口向左转，然后直行三百米。"],
    "en": [
        "The weather is lovely today, so we are going to walk in the park.",
        "Please turn left at the next intersection and continue straight.",
    ],
}
# Clips of the same speaker as a prompt, for the cross-recording check.
SAME_SPEAKER = {"en_ljspeech_LJ001-0001.wav": "en_ljspeech_LJ001-0002_short.wav"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "audio"
    )
    args = parser.parse_args()

    settings = Settings()
    engine = KokoroEngine.from_settings(settings)
    encoder = SpeakerEncoder.load()
    asr = Transcriber.from_settings(settings)
    enroller = Enroller(engine, encoder, lambda: asr)
    clips = json.loads((args.clips / "manifest.json").read_text(encoding="utf-8"))["clips"]

    started = time.perf_counter()
    enroller.warm()  # once per process; not part of any one voice's enrollment
    base_cache_s = time.perf_counter() - started

    results = []
    for clip in clips:
        name = clip["file"]
        try:
            prompt = prepare_prompt((args.clips / name).read_bytes())
        except InvalidInput as e:
            results.append({"clip": name, "rejected": str(e)})
            continue
        t0 = time.perf_counter()
        profile = enroller.enroll(prompt, transcript=clip["transcript"], language=clip["language"])
        enroll_s = time.perf_counter() - t0
        no_frames = np.zeros((0, 0), np.float32)
        stats_only = replace(profile, frame_source=no_frames, frame_target=no_frames, frame_weights=no_frames)
        other = SAME_SPEAKER.get(name)
        other_emb = None
        if other:
            other_prompt = (args.clips / other).read_bytes()
            d = decode(other_prompt)
            other_emb = encoder.embed(d.samples, d.sample_rate)
        row: dict[str, object] = {
            "clip": name,
            "language": clip["language"],
            "base_voice": profile.base_voice,
            "conversion": profile.meta["conversion"],
            "enroll_s": round(enroll_s, 2),
        }
        labelled = (("stock", None), ("stats_only", stats_only), ("cloned", profile))
        for label, prof in labelled:
            row[label] = score(
                engine, encoder, asr, profile, prof, other_emb, intelligibility=label in ("stock", "cloned")
            )
        results.append(row)
        print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)

    scored = [r for r in results if "cloned" in r]
    summary = {
        label: round(float(np.mean([r[label]["sim"] for r in scored])), 4)
        for label in ("stock", "stats_only", "cloned")
    }
    errors = {
        f"{label}_{measure}": round(float(np.mean([r[label][measure] for r in scored])), 4)
        for label in ("stock", "cloned")
        for measure in ("cer_zh", "wer_en")
    }
    report = {
        "base_voice_cache_s": round(base_cache_s, 2),
        "mean_sim": summary,
        "mean_errors": errors,
        "mean_enroll_s": round(float(np.mean([r["enroll_s"] for r in scored])), 2),
        "clips": results,
    }
    json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def score(
    engine: KokoroEngine,
    encoder: SpeakerEncoder,
    asr: Transcriber,
    enrolled: VoiceProfile,
    profile: VoiceProfile | None,
    other_embedding: np.ndarray | None,
    intelligibility: bool,
) -> dict[str, float]:
    """SIM to the prompt (and to another recording of the speaker), RTF and CER/WER on UNSEEN."""
    rate = engine.capabilities.sample_rate
    sims, others, rtfs = [], [], []
    errors: dict[str, list[float]] = {"cer_zh": [], "wer_en": []}
    for lang, sentences in UNSEEN.items():
        for text in sentences:
            mode: Mode = "preset" if profile is None else "zero_shot"
            request = SynthesisRequest(text=text, voice=enrolled.base_voice, profile=profile, mode=mode)
            result = synthesize(engine, request)
            emb = encoder.embed(result.samples, rate)
            sims.append(similarity(enrolled.embedding, emb))
            if other_embedding is not None:
                others.append(similarity(other_embedding, emb))
            rtfs.append(result.compute_s / result.duration_s)
            if intelligibility:
                audio16k = soxr.resample(result.samples, rate, 16_000).astype(np.float32)
                heard = asr.transcribe(audio16k, language=lang).text
                if lang == "zh":
                    errors["cer_zh"].append(cer(text, heard))
                else:
                    errors["wer_en"].append(wer(text, heard))
    entry = {"sim": round(float(np.mean(sims)), 4), "rtf": round(float(np.mean(rtfs)), 3)}
    if intelligibility:
        entry.update({k: round(float(np.mean(v)), 4) for k, v in errors.items()})
    if others:
        entry["sim_other_recording"] = round(float(np.mean(others)), 4)
    return entry


if __name__ == "__main__":
    main()
