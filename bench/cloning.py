"""Cloning quality on real recordings: speaker similarity on unseen sentences, intelligibility,
enrollment time, synthesis RTF. JSON out.

    python bench/cloning.py [--clips DIR_WITH_manifest.json] [--generations 8]

For each clip: SIM (Resemblyzer cosine) between the prompt and speech the cloning never saw,
for (a) the stock voice enrollment chose as its base, (b) statistics-only conversion of it,
(c) with the frame map learnt from parallel speech (untuned) and (d) the full enrolled profile
(tuned offsets on top); CER (zh) / WER (en) of (a) and (d) by the bundled Whisper; where the
manifest has a second recording of the same speaker, SIM against that one too (guards against
optimising the judge on the prompt itself).
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
from voiceforge.errors import InvalidInput
from voiceforge.voices.embedding import SpeakerEncoder, similarity
from voiceforge.voices.enroll import Budget, Enroller
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
    parser.add_argument("--generations", type=int, default=Budget().generations)
    parser.add_argument("--population", type=int, default=Budget().population)
    args = parser.parse_args()

    settings = Settings()
    engine = KokoroEngine.from_settings(settings)
    encoder = SpeakerEncoder.load()
    asr = Transcriber.from_settings(settings)
    enroller = Enroller(engine, encoder, lambda: asr)
    budget = Budget(population=args.population, generations=args.generations)
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
        profile = enroller.enroll(
            prompt, transcript=clip["transcript"], language=clip["language"], budget=budget
        )
        enroll_s = time.perf_counter() - t0
        mapped = replace(profile, envelope_offset=np.zeros_like(profile.envelope_offset), f0_shift=0.0)
        no_frames = np.zeros((0, 0), np.float32)
        stats_only = replace(mapped, frame_source=no_frames, frame_target=no_frames, frame_weights=no_frames)
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
        labelled = (("stock", None), ("stats_only", stats_only), ("mapped", mapped), ("cloned", profile))
        for label, prof in labelled:
            row[label] = score(
                engine, encoder, asr, profile, prof, other_emb, intelligibility=label in ("stock", "cloned")
            )
        results.append(row)
        print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)

    scored = [r for r in results if "cloned" in r]
    summary = {
        label: round(float(np.mean([r[label]["sim"] for r in scored])), 4)
        for label in ("stock", "stats_only", "mapped", "cloned")
    }
    errors = {
        lang: round(float(np.mean([r["cloned"]["cer_wer"] for r in scored if r["language"] == lang])), 4)
        for lang in ("zh", "en")
        if any(r["language"] == lang for r in scored)
    }
    report = {
        "budget": {"population": budget.population, "generations": budget.generations},
        "base_voice_cache_s": round(base_cache_s, 2),
        "mean_sim": summary,
        "mean_cer_zh_wer_en_cloned": errors,
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
    sims, others, errors, rtfs = [], [], [], []
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
                errors.append(cer(text, heard) if lang == "zh" else wer(text, heard))
    entry = {"sim": round(float(np.mean(sims)), 4), "rtf": round(float(np.mean(rtfs)), 3)}
    if errors:
        entry["cer_wer"] = round(float(np.mean(errors)), 4)
    if others:
        entry["sim_other_recording"] = round(float(np.mean(others)), 4)
    return entry


if __name__ == "__main__":
    main()
