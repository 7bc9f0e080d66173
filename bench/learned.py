"""Learned voices (engines/kokoro/learn/fit.py) on real recordings: what each technique bought. JSON out.

    python bench/learned.py [--clips DIR] [--steps N] [--only FILE]

For each prompt, three style packs from one learning run: the stock voice learning started from
(chosen by calibration SIM), that voice with only the pitch fit (prosody half), and the full
learned pack (pitch + timbre). Each speaks REPORT sentences of the prompt's language (never the
training or calibration phrases engines/kokoro/learn/fit.py uses; CALIBRATION there is the design set) through
the int8 engine, and is judged by:

- sim_prompt: Resemblyzer cosine to the prompt. Resemblyzer is also the timbre LOSS, so this
  figure flatters the learned pack;
- sim_other: cosine to other recordings of the same speaker (LJ Speech: the prompt is the first
  half of LJ001-0001; the judges are its second half and LJ001-0002), beside the real
  recordings' own cosine to the prompt (sim_other_real);
- f0_error: |median F0 of the speech / the prompt's - 1| (WORLD dio);
- cer_zh / wer_en: the bundled Whisper base on each sentence.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voiceforge.asr.scoring import cer, wer
from voiceforge.asr.whisper import Transcriber
from voiceforge.config import Settings
from voiceforge.engines.kokoro.convert import analyse
from voiceforge.engines.kokoro.learn.fit import LearnConfig, Learner
from voiceforge.voices.embedding import similarity

REPORT = {
    "zh": [
        "春天来了，河边的柳树发出了嫩绿的新芽。", "请把桌子上的那杯热茶递给我。",
        "这家饭馆的饺子非常好吃，价格也不贵。", "火车将在十分钟后到达北京南站。",
        "他每天晚上都会给女儿讲一个故事。", "明年夏天我们打算去海边旅行。",
        "医生说他需要多喝水，早点休息。", "图书馆周末开放到晚上九点。",
        "妈妈在厨房里做红烧肉。", "这个问题比我想象的要复杂得多。",
    ],
    "en": [
        "The weather is lovely today, so we are going to walk in the park.",
        "Please turn left at the next intersection and continue straight.",
        "My brother fixed the old bicycle in the garage last weekend.",
        "The train to London leaves from platform nine at noon.",
        "She wrote a long letter to her grandmother every month.",
        "We need more milk, bread and eggs for breakfast tomorrow.",
        "The museum was closed because of the heavy snow.",
        "He forgot his umbrella at the office again.",
        "Our teacher asked us to read the first chapter before Friday.",
        "The little dog barked at every car that drove past.",
    ],
}  # fmt: skip
RATE = 24_000


def _load(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return mono if rate == RATE else soxr.resample(mono, rate, RATE).astype(np.float32)


def _median_f0(audio: np.ndarray) -> float:
    f0 = analyse(audio.astype(np.float64), RATE).f0
    return float(np.median(f0[f0 > 0]))


def _prompts(clips: Path) -> list[tuple[str, str, np.ndarray, list[np.ndarray]]]:
    """(name, language, prompt audio, other recordings of the same speaker)."""
    lj = _load(clips / "en_ljspeech_LJ001-0001.wav")
    half = len(lj) // 2
    return [  # the prompt with other recordings first: its cross-recording SIM is the honest judge
        ("en_ljspeech_LJ001-0001[first half]", "en", lj[:half],
         [lj[half:], _load(clips / "en_ljspeech_LJ001-0002_short.wav")]),
        ("zh_prompt_cosyvoice", "zh", _load(clips / "zh_prompt_cosyvoice.wav"), []),
        ("en_prompt_f5", "en", _load(clips / "en_prompt_f5.wav"), []),
    ]  # fmt: skip


def _judge(learner: Learner, asr: Transcriber, pack: np.ndarray, language: str, prompt: np.ndarray,
           others: list[np.ndarray]) -> dict[str, float]:  # fmt: skip
    encoder, frontend = learner.encoder, learner.frontend
    target = encoder.embed(prompt, RATE)
    sims, errors, spoken = [], [], []
    for text in REPORT[language]:
        audio = np.concatenate([learner.model.infer(s.phonemes, pack, 1.0) for s in frontend.prepare(text)])
        spoken.append(audio)
        sims.append(similarity(target, encoder.embed(audio, RATE)))
        heard = asr.transcribe(soxr.resample(audio, RATE, 16_000).astype(np.float32), language=language).text
        errors.append(cer(text, heard) if language == "zh" else wer(text, heard))
    whole = encoder.embed(np.concatenate(spoken), RATE)
    entry = {
        "sim_prompt": round(float(np.mean(sims)), 4),
        "cer_zh" if language == "zh" else "wer_en": round(float(np.mean(errors)), 4),
        "f0_error": round(abs(_median_f0(np.concatenate(spoken)) / _median_f0(prompt) - 1), 4),
    }
    if others:
        sims_other = [similarity(encoder.embed(o, RATE), whole) for o in others]
        entry["sim_other"] = round(float(np.mean(sims_other)), 4)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "audio"
    parser.add_argument("--clips", type=Path, default=shared)
    parser.add_argument("--steps", type=int, default=LearnConfig().steps)
    parser.add_argument("--only", default="", help="run only the prompt whose name contains this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")  # progress on stderr
    settings = Settings()
    learner = Learner.load(settings)
    asr = Transcriber.from_settings(settings)
    results = []
    for name, language, prompt, others in _prompts(args.clips):
        if args.only not in name:
            continue
        started = time.perf_counter()
        learned = learner.learn(
            prompt,
            RATE,
            language,
            config=LearnConfig(steps=args.steps),
            progress=lambda p: logging.info("%s", p),
        )
        learn_s = time.perf_counter() - started
        stock = learner.packs[learned.base_voice]
        entry: dict[str, object] = {
            "prompt": name,
            "base_voice": learned.base_voice,
            "learn_s": round(learn_s, 1),
            "steps": learned.steps,
            "calibration_sim": {
                "stock": round(learned.stock_sim, 4),
                "learned": round(learned.calibration_sim, 4),
            },
            "f0_hz": {
                "prompt": round(learned.f0_target_hz, 1),
                "after_pitch_fit": round(learned.f0_learned_hz, 1),
            },
        }
        if others:
            real = learner.encoder.embed(prompt, RATE)
            entry["sim_other_real"] = round(
                float(np.mean([similarity(real, learner.encoder.embed(o, RATE)) for o in others])), 4
            )
        for label, pack in (("stock", stock), ("pitch", learned.pitch_pack), ("pitch+timbre", learned.pack)):
            entry[label] = _judge(learner, asr, pack, language, prompt, others)
        results.append(entry)
        print(json.dumps(entry, ensure_ascii=False), flush=True)
    learned_sims = [r["pitch+timbre"]["sim_prompt"] for r in results]  # type: ignore[index]
    summary = {"mean_sim_prompt_learned": round(float(np.mean(learned_sims)), 4) if learned_sims else None}
    print(json.dumps({"summary": summary, "results": results}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
