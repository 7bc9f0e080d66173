"""Stock and house voices by intelligibility: which voice each text language should default to. JSON out.

    python bench/house.py [--voices zf_qinghe,jf_gongitsune] [--languages zh,en] [--out house.json]

Every candidate (each stock voice of the embedded engine, the house voices included) speaks the
HELD_OUT sentences of each language through the real int8 engine (text frontend, chunking, trim),
and the bundled Whisper base transcribes each one with the language given. Reported per voice and
language: the mean CER (zh) or WER (en), the worst sentence, and what Whisper heard there.

The sentences are none of what learning trains, calibrates or stops on (engines/kokoro/learn/fit.py
TRAINING and CALIBRATION, engines/kokoro/enroll.py CALIBRATION): checked at start. The default of
each language (engines/kokoro/catalog.py DEFAULTS) is the voice with the lowest mean error here
(a tie goes to a voice of that language);
"chosen" says which, beside the engine's defaults in force and the default before house voices
(jf_gongitsune, for every language).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import soxr

from voiceforge.asr.scoring import cer, wer
from voiceforge.asr.whisper import Transcriber
from voiceforge.config import Settings
from voiceforge.engines.base import SynthesisRequest, default_voice, synthesize
from voiceforge.engines.kokoro import KokoroEngine
from voiceforge.engines.kokoro.enroll import CALIBRATION as ENROLL_CALIBRATION
from voiceforge.engines.kokoro.learn.fit import CALIBRATION, TRAINING

HELD_OUT = {
    "zh": [
        "春天来了，河边的柳树发出了嫩绿的新芽，孩子们在草地上放风筝。",
        "请把桌子上的那杯热茶递给我。", "这家饭馆的饺子非常好吃，价格也不贵。",
        "火车将在十分钟后到达北京南站。", "他每天晚上都会给女儿讲一个故事。",
        "明年夏天我们打算去海边旅行。", "医生说他需要多喝水，早点休息。",
        "图书馆周末开放到晚上九点。", "妈妈在厨房里做红烧肉。",
        "这个问题比我想象的要复杂得多。", "银行门口排了很长的队。",
        "冬天的北方经常下雪，路面很滑。", "我们公司的新产品下个月上市。",
        "爷爷喜欢在院子里种花和养鱼。", "这条新闻引起了很多人的关注。",
        "请大家安静，会议马上开始。", "他弹钢琴弹得非常好听。",
        "周末我们一起去看电影怎么样？", "城市的夜景在灯光下显得格外美丽。",
        "运动员们在操场上认真训练。", "你能帮我把这封信寄出去吗？",
        "山上的空气特别新鲜。",
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
        "A cup of hot coffee is the best way to start the morning.",
        "The river runs quietly through the middle of the old town.",
        "Could you send me the report before the meeting starts?",
        "Thousands of people gathered in the square to watch the fireworks.",
        "The doctor told him to rest for a few days.",
        "Farmers hope for rain after the long dry summer.",
        "Her new phone takes much better pictures than the old one.",
        "The bus was late, so we walked home in the rain.",
        "Scientists discovered a new species of frog in the forest.",
        "Remember to lock the door when you leave the house.",
        "The kitchen smelled of fresh bread and cinnamon.",
        "Most of the shops close early on Sunday evenings.",
    ],
}  # fmt: skip
OLD_DEFAULT = "jf_gongitsune"  # what every request without a voice spoke before the house voices
RATE = 16_000


def _held_out() -> None:
    learning = {*TRAINING.values(), *(t for ts in CALIBRATION.values() for t in ts)}
    learning |= {t for _, t in ENROLL_CALIBRATION}
    overlap = learning & {t for ts in HELD_OUT.values() for t in ts}
    if overlap:
        raise SystemExit(f"held-out sentences overlap the learning sets: {sorted(overlap)}")


def _score(engine: KokoroEngine, asr: Transcriber, voice: str, language: str) -> dict[str, object]:
    errors, worst, heard_worst, compute = [], -1.0, "", 0.0
    for text in HELD_OUT[language]:
        result = synthesize(engine, SynthesisRequest(text=text, voice=voice))
        compute += result.compute_s
        audio = soxr.resample(result.samples, result.sample_rate, RATE).astype(np.float32)
        heard = asr.transcribe(audio, language=language).text
        error = cer(text, heard) if language == "zh" else wer(text, heard)
        errors.append(error)
        if error > worst:
            worst, heard_worst = error, f"{text} → {heard}"
    return {
        "cer" if language == "zh" else "wer": round(float(np.mean(errors)), 4),
        "exact": sum(e == 0 for e in errors),
        "worst": round(worst, 4),
        "worst_heard": heard_worst,
        "synth_s": round(compute, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", default="", help="comma-separated; default: every stock voice")
    parser.add_argument("--languages", default="zh,en")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--reuse", type=Path, default=None, help="an earlier run's JSON: its voices are not spoken again"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")  # progress on stderr
    _held_out()
    settings = Settings()
    engine = KokoroEngine.from_settings(settings)
    asr = Transcriber.from_settings(settings)
    info = {v.name: v for v in engine.voices()}
    voices = [v for v in args.voices.split(",") if v] or sorted(info)
    if unknown := set(voices) - set(info):
        raise SystemExit(f"unknown voices {sorted(unknown)}; the engine has {sorted(info)}")
    languages = [lang for lang in args.languages.split(",") if lang]
    started = time.perf_counter()
    rows: dict[str, dict[str, object]] = {}
    if args.reuse:
        earlier = json.loads(args.reuse.read_text(encoding="utf-8"))["voices"]
        rows = {v: row for v, row in earlier.items() if v in info and all(lang in row for lang in languages)}
    for voice in voices:
        if voice in rows:
            continue
        rows[voice] = {"display_name": info[voice].label, "language": info[voice].language}
        for language in languages:
            rows[voice][language] = _score(engine, asr, voice, language)
            logging.info("%s %s: %s", voice, language, rows[voice][language])
    key = {"zh": "cer", "en": "wer"}

    def rank(voice: str, lang: str) -> tuple[float, bool, str]:  # a tie goes to the language's own voice
        native = str(rows[voice]["language"]).split("-")[0] == lang
        return rows[voice][lang][key[lang]], not native, voice  # type: ignore[index,return-value]

    chosen = {lang: min(rows, key=lambda v, lang=lang: rank(v, lang)) for lang in languages}
    report = {
        "bench": "house",
        "sentences": {lang: len(HELD_OUT[lang]) for lang in languages},
        "judge": "bundled Whisper base (int8), language given; CER zh, WER en; mean over sentences",
        "voices": rows,
        "chosen": chosen,
        "defaults_in_force": {lang: default_voice(engine, language=lang) for lang in languages},
        "old_default": {lang: rows.get(OLD_DEFAULT, {}).get(lang) for lang in languages},
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
