"""Learned voices (engines/kokoro/learn/fit.py) on real recordings, judged honestly: JSON out.

    python bench/learned.py [--clips DIR] [--set report|design] [--only NAME]
                            [--rows stock,fast,pitch,learned]
                            [--config FIELD=VALUE ...]

This is issue 17's honest evaluation (bench/cloning.py stays the fast path's own bench). Each
prompt goes through prepare_prompt as the service would. Per prompt, four voices speak the
sentences of the chosen set through the int8 engine (the serving path):

- stock: the stock voice learning started from (chosen by calibration SIM);
- fast: today's WORLD enrollment (engines/kokoro/enroll.py);
- pitch: the stock voice with only the prosody-half fits of the learning run (pitch, rate);
- learned: the full learned pack.

Judges:

- sim_prompt: Resemblyzer cosine to the prompt, mean over sentences. Resemblyzer is also the
  timbre LOSS of the learning run, so this figure flatters the learned voice;
- sim_other: cosine of all the sentences' speech to other recordings of the same speaker (LJ
  Speech: the prompt is the first half of LJ001-0001; the judges are its second half and
  LJ001-0002), beside the real recordings' own cosine to the prompt (sim_other_real); the zh and
  F5 clips have no second recording and are too short (3.5 s, 5.3 s) to cut into a prompt of
  at least 3 s and a judge;
- f0_error: |median F0 of the speech / the prompt's - 1| (WORLD dio);
- rate_ratio: the prompt's seconds of speech per syllable over the voice's (> 1: the voice is
  faster than the speaker); crude (pauses under 0.2 s count as speech), compare rows, not prompts;
- cer_zh / wer_en: the bundled Whisper base on each sentence.

Two sentence sets: DESIGN for choosing techniques and settings, REPORT for the figures quoted in
README/CHANGELOG; neither holds the training or calibration phrases of fit.py. ``--config``
overrides LearnConfig fields (``--config timbre_pitch=0``) to measure what a technique buys.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from voiceforge.asr.scoring import cer, wer
from voiceforge.asr.whisper import Transcriber
from voiceforge.audio.prompt import PromptAudio, prepare_prompt
from voiceforge.config import Settings
from voiceforge.engines.base import SynthesisRequest, synthesize
from voiceforge.engines.kokoro import KokoroEngine
from voiceforge.engines.kokoro.convert import analyse
from voiceforge.engines.kokoro.enroll import Enroller
from voiceforge.engines.kokoro.learn.enroll import learned_profile, prompt_samples
from voiceforge.engines.kokoro.learn.fit import LearnConfig, Learner
from voiceforge.text.frontend import Frontend
from voiceforge.voices.embedding import similarity
from voiceforge.voices.profile import VoiceProfile

REPORT = {
    "zh": [
        "春天来了，河边的柳树发出了嫩绿的新芽。",
        "请把桌子上的那杯热茶递给我。",
        "这家饭馆的饺子非常好吃，价格也不贵。",
        "火车将在十分钟后到达北京南站。",
        "他每天晚上都会给女儿讲一个故事。",
        "明年夏天我们打算去海边旅行。",
        "医生说他需要多喝水，早点休息。",
        "图书馆周末开放到晚上九点。",
        "妈妈在厨房里做红烧肉。",
        "这个问题比我想象的要复杂得多。",
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
}
DESIGN = {
    "zh": [
        "我的手机没电了，能借你的充电器用一下吗？", "这条街上新开了一家咖啡店。",
        "孩子们放学以后在操场上踢足球。", "请你把窗户关上，外面太冷了。",
        "我们公司下个月要搬到新的办公楼。", "爷爷每天早上都去公园打太极拳。",
        "这部电影的结局让很多观众感到意外。", "周末的超市里总是有很多人。",
    ],
    "en": [
        "I left my keys on the kitchen table this morning.",
        "The meeting has been moved to Thursday afternoon.",
        "Could you send me the photos from the wedding?",
        "A cold wind was blowing across the empty beach.",
        "They painted the fence white before the summer started.",
        "Most of the shops in the village close early on Sunday.",
        "He spent the whole evening reading about ancient Rome.",
        "The bus was late, so we walked to the station instead.",
    ],
}  # fmt: skip
SETS = {"report": REPORT, "design": DESIGN}
RATE = 24_000


def _load(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return mono if rate == RATE else soxr.resample(mono, rate, RATE).astype(np.float32)


def _prepared(audio: np.ndarray) -> PromptAudio:
    """``audio`` through prepare_prompt, as an upload would go."""
    buf = io.BytesIO()
    sf.write(buf, audio, RATE, format="WAV", subtype="FLOAT")
    return prepare_prompt(buf.getvalue())


def _median_f0(audio: np.ndarray) -> float:
    f0 = analyse(audio.astype(np.float64), RATE).f0
    return float(np.median(f0[f0 > 0]))


def _speech_s(audio: np.ndarray) -> float:
    """Seconds of speech: 20 ms frames within 35 dB of the loudest, pauses under 0.2 s kept."""
    hop = RATE // 50
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - 35.0)
    if len(loud) == 0:
        return 0.0
    gaps = np.diff(loud)
    return float((len(loud) + np.sum(np.where(gaps <= 10, gaps - 1, 0))) / 50)


_FRONTEND = Frontend()
_VOWELS = re.compile("[aeiouAIOWYæɑɐɒɔəɚɛɜɪʊʌᵻ]+")


def _units(text: str, language: str) -> int:
    """Syllables: Han characters (zh), vowel runs of the front end's phonemes (en)."""
    if language == "zh":
        return sum("\u4e00" <= c <= "\u9fff" for c in text)
    return sum(len(_VOWELS.findall(s.phonemes)) for s in _FRONTEND.prepare(text))


def _prompts(clips: Path) -> list[tuple[str, str, np.ndarray, list[np.ndarray], float]]:
    """(name, language, prompt audio, other recordings of the same speaker, seconds per unit)."""
    manifest = json.loads((clips / "manifest.json").read_text(encoding="utf-8"))
    said = {c["file"]: c["transcript"] for c in manifest["clips"]}

    def pace(file: str, language: str) -> float:  # from the whole clip and its exact transcript
        return _speech_s(_load(clips / file)) / _units(said[file], language)

    lj_file = "en_ljspeech_LJ001-0001.wav"
    lj = _load(clips / lj_file)
    half = len(lj) // 2
    return [  # the prompt with other recordings first: its cross-recording SIM is the honest judge
        ("en_ljspeech_LJ001-0001[first half]", "en", lj[:half],
         [lj[half:], _load(clips / "en_ljspeech_LJ001-0002_short.wav")], pace(lj_file, "en")),
        ("zh_prompt_cosyvoice", "zh", _load(clips / "zh_prompt_cosyvoice.wav"), [],
         pace("zh_prompt_cosyvoice.wav", "zh")),
        ("en_prompt_f5", "en", _load(clips / "en_prompt_f5.wav"), [], pace("en_prompt_f5.wav", "en")),
    ]  # fmt: skip


def _as_learned(template: VoiceProfile, pack: np.ndarray) -> VoiceProfile:
    return replace(template, style=pack)


def _judge(engine: KokoroEngine, learner: Learner, asr: Transcriber, request: SynthesisRequest,
           sentences: list[str], language: str, prompt: np.ndarray, others: list[np.ndarray],
           prompt_pace: float) -> dict[str, float]:  # fmt: skip
    encoder = learner.encoder
    target = encoder.embed(prompt, RATE)
    sims, errors, spoken = [], [], []
    for text in sentences:
        audio = synthesize(engine, replace(request, text=text)).samples
        spoken.append(audio)
        sims.append(similarity(target, encoder.embed(audio, RATE)))
        heard = asr.transcribe(soxr.resample(audio, RATE, 16_000).astype(np.float32), language=language).text
        errors.append(cer(text, heard) if language == "zh" else wer(text, heard))
    whole = np.concatenate(spoken)
    pace = sum(_speech_s(a) for a in spoken) / sum(_units(t, language) for t in sentences)
    entry = {
        "sim_prompt": round(float(np.mean(sims)), 4),
        "cer_zh" if language == "zh" else "wer_en": round(float(np.mean(errors)), 4),
        "f0_error": round(abs(_median_f0(whole) / _median_f0(prompt) - 1), 4),
        "f0_hz": round(_median_f0(whole), 1),
        "rate_ratio": round(prompt_pace / pace, 3),  # > 1: faster than the prompt speaker
    }
    if others:
        embedding = encoder.embed(whole, RATE)
        entry["sim_other"] = round(
            float(np.mean([similarity(encoder.embed(o, RATE), embedding) for o in others])), 4
        )
    return entry


def _config(pairs: list[str]) -> LearnConfig:
    types = {f.name: f.type for f in fields(LearnConfig)}
    values: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(
                f"--config {pair!r}: LearnConfig has no field {key!r}; it has {', '.join(types)}"
            )
        kind = str(types[key])
        values[key] = value.lower() in ("1", "true", "yes") if kind == "bool" else (
            int(value) if kind == "int" else float(value))  # fmt: skip
    return LearnConfig(**values)  # type: ignore[arg-type]


def _summary(results: list[dict[str, Any]], sentence_set: str, config: list[str]) -> dict[str, object]:
    summary: dict[str, object] = {"set": sentence_set, "config": config}
    for label in ("stock", "fast", "pitch", "learned"):
        judged = [r[label] for r in results if label in r]
        if judged:
            summary[label] = {
                "mean_sim_prompt": round(float(np.mean([r["sim_prompt"] for r in judged])), 4),
                "mean_f0_error": round(float(np.mean([r["f0_error"] for r in judged])), 4),
            }
    if results:
        summary["mean_learn_s"] = round(float(np.mean([r["learn_s"] for r in results])), 1)
        summary["mean_learn_cpu_s"] = round(float(np.mean([r["learn_cpu_s"] for r in results])), 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "audio"
    parser.add_argument("--clips", type=Path, default=shared)
    parser.add_argument("--set", choices=sorted(SETS), default="report", help="sentences to judge on")
    parser.add_argument("--only", default="", help="run only the prompt whose name contains this")
    parser.add_argument("--save", type=Path, help="write each prompt's learned and pitch packs here (.npz)")
    parser.add_argument("--rows", default="stock,fast,pitch,learned", help="which voices to judge")
    parser.add_argument(
        "--config", nargs="*", default=[], metavar="FIELD=VALUE", help="LearnConfig overrides"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")  # progress on stderr
    config = _config(args.config)
    settings = Settings()
    learner = Learner.load(settings)
    engine = KokoroEngine.from_settings(settings)
    asr = Transcriber.from_settings(settings)
    enroller = Enroller(engine, learner.encoder, lambda: asr)
    results: list[dict[str, Any]] = []
    for name, language, audio, others, prompt_pace in _prompts(args.clips):
        if args.only not in name:
            continue
        sentences = SETS[args.set][language]
        prompt = _prepared(audio)
        samples = prompt_samples(learner, prompt)
        # what the UI would fill in: Whisper base's transcript, mistakes and all
        transcript = asr.transcribe(
            soxr.resample(samples, RATE, 16_000).astype(np.float32), language=language
        ).text.strip()
        started, cpu = time.perf_counter(), time.process_time()
        learned = learner.learn(
            samples, RATE, language, transcript=transcript, config=config,
            progress=lambda p: logging.info("%s", p),
        )  # fmt: skip
        learn_s, learn_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(args.save / f"{name}.npz", pack=learned.pack, pitch=learned.pitch_pack)
        profile = learned_profile(learner, learned, prompt, transcript=transcript, language=language)
        entry: dict[str, Any] = {
            "prompt": name,
            "transcript": transcript,
            "base_voice": learned.base_voice,
            "learn_s": round(learn_s, 1),
            # CPU seconds of the process over the run: on a shared machine the wall time above
            # measures the neighbours; on 2 idle cores learning takes about learn_cpu_s / 2
            "learn_cpu_s": round(learn_cpu_s, 1),
            "steps": learned.steps,
            "calibration_sim": {
                "stock": round(learned.stock_sim, 4),
                "learned": round(learned.calibration_sim, 4),
            },
            "f0_hz_prompt": round(_median_f0(samples), 1),
            "history": learned.history,
        }
        if others:
            real = learner.encoder.embed(samples, RATE)
            entry["sim_other_real"] = round(
                float(np.mean([similarity(real, learner.encoder.embed(o, RATE)) for o in others])), 4
            )
        requests = {"stock": SynthesisRequest(text=".", voice=learned.base_voice)}
        rows = args.rows.split(",")
        if "fast" in rows:
            t0 = time.perf_counter()
            fast = enroller.enroll(prompt, transcript=transcript, language=language)
            entry["fast_enroll_s"] = round(time.perf_counter() - t0, 1)
            requests["fast"] = SynthesisRequest(text=".", profile=fast, mode="zero_shot")
        requests["pitch"] = SynthesisRequest(
            text=".", profile=_as_learned(profile, learned.pitch_pack), mode="zero_shot"
        )
        requests["learned"] = SynthesisRequest(text=".", profile=profile, mode="zero_shot")
        for label, request in requests.items():
            if label not in rows:
                continue
            entry[label] = _judge(
                engine, learner, asr, request, sentences, language, samples, others, prompt_pace
            )
        results.append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "history"}, ensure_ascii=False), flush=True)
    summary = _summary(results, args.set, args.config)
    print(json.dumps({"summary": summary, "results": results}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
