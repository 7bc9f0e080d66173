"""Engine speed: a bare onnxruntime loop vs. the voiceforge engine on the same texts, one run.

    python bench/engine.py [--repeats 3] [--variants]

Prints JSON: the compute time of the same sentences through
(a) a bare loop feeding pre-computed phoneme tokens to an onnxruntime session and
(b) the voiceforge engine end to end (text → normalisation → G2P → model → trimmed chunks),
run interleaved (bare, engine, bare, engine, …; the best of each), their ratio, and both as a
real-time factor over the same audio seconds (what the engine delivers: trimmed speech and its
pauses), so the two sides count the same work. Also model load time and peak RSS.
`--variants` adds session-option experiments.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from voiceforge.config import Settings
from voiceforge.engines.base import SynthesisRequest, synthesize
from voiceforge.engines.kokoro import KokoroEngine
from voiceforge.engines.kokoro.dequantize import fp32_model_path
from voiceforge.engines.kokoro.model import SAMPLE_RATE, KokoroModel, SessionConfig, bundled_model_bytes
from voiceforge.text.frontend import Frontend

TEXTS = [
    "今天天气很好，我们一起去公园散步吧。",
    "The weather is lovely today, so we are going to walk in the park.",
    "今天天气很好, let's go to the park and have a picnic.",
    "2024年3月5日上午10:30，会议在北京召开，预计有120人参加。",
    "Dr. Smith paid $3.50 for a coffee at 10:30, which was 3.5% more than last week.",
    "语音合成技术让机器能够像人一样说话，它在导航、客服和有声读物中都有广泛的应用。",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_pass(session: ort.InferenceSession, feeds: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """(compute seconds, raw model audio seconds) of one pass over the sentences."""
    started = time.perf_counter()
    samples = sum(session.run(None, f)[0].size for f in feeds)
    return time.perf_counter() - started, samples / SAMPLE_RATE


def engine_pass(engine: KokoroEngine, paragraph: bool = True) -> tuple[float, float]:
    """(compute seconds, delivered audio seconds): all texts as one request, or one each."""
    requests = ["\n".join(TEXTS)] if paragraph else TEXTS
    started = time.perf_counter()
    audio_s = sum(synthesize(engine, SynthesisRequest(text=t)).duration_s for t in requests)
    return time.perf_counter() - started, audio_s


def engine_loop(engine: KokoroEngine, repeats: int, paragraph: bool = True) -> dict[str, float]:
    """The best of ``repeats`` passes of :func:`engine_pass`, as compute seconds and RTF."""
    runs = [engine_pass(engine, paragraph) for _ in range(repeats)]
    best, audio_s = min(runs)
    return {"compute_s": best, "audio_s": audio_s, "rtf": best / audio_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true", help="also time session-option variants")
    args = parser.parse_args()

    settings = Settings()
    started = time.perf_counter()
    engine = KokoroEngine.from_settings(settings)
    load_s = time.perf_counter() - started
    pack = engine.packs[engine.default_voice]

    # The same phonemes the engine will produce, computed once outside the timed loop.
    frontend = Frontend()
    sentences = [s for t in TEXTS for s in frontend.prepare(t)]
    feeds = []
    for s in sentences:
        ids = engine.model.tokens(s.phonemes)
        feeds.append(
            {
                "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                "style": pack[len(ids) - 1].reshape(1, 256),
                "speed": np.array([1.0], dtype=np.float32),
            }
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    bare_session = ort.InferenceSession(bundled_model_bytes(), options, providers=["CPUExecutionProvider"])

    engine_pass(engine)  # warm-up: first-call allocations, hibari's lazy lexicon load
    bare_pass(bare_session, feeds)
    # Interleaved, so that machine noise hits both sides alike; the best pass of each side.
    bare_runs, our_runs = [], []
    for _ in range(args.repeats):
        bare_runs.append(bare_pass(bare_session, feeds))
        our_runs.append(engine_pass(engine))
    bare_s, raw_audio_s = min(bare_runs)
    ours_s, audio_s = min(our_runs)
    report: dict[str, object] = {
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "texts": len(TEXTS),
        "sentences": len(sentences),
        "load_s": round(load_s, 3),
        "audio_s": round(audio_s, 3),  # what the engine delivers; both RTFs divide by it
        "raw_model_audio_s": round(raw_audio_s, 3),  # the bare loop's untrimmed output, for reference
        "bare_onnxruntime": {"compute_s": round(bare_s, 4), "rtf": round(bare_s / audio_s, 4)},
        "voiceforge_engine": {
            "threads": engine.model.session.get_session_options().intra_op_num_threads,
            "parallel_sentences": engine.parallel,
            "compute_s": round(ours_s, 4),
            "rtf": round(ours_s / audio_s, 4),
        },
        "engine_over_bare": round(ours_s / bare_s, 4),  # same sentences, same audio: compute ratio
    }
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)  # bare session + engine, before any variant
    started = time.perf_counter()
    for text in TEXTS:
        frontend.prepare(text)
    # G2P runs one sentence ahead on a helper thread, so at best it hides this much per pass
    report["frontend_s_per_pass"] = round(time.perf_counter() - started, 4)
    if args.variants:
        report["variants"] = variants(engine, args.repeats)
    json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def variants(engine: KokoroEngine, repeats: int) -> dict[str, dict[str, float]]:
    """Engine RTF under other settings, each a fresh session over the same weights."""
    out = {}
    weights = bundled_model_bytes()
    fp32 = fp32_model_path(Settings().cache_dir, weights)
    cores = os.cpu_count() or 1
    source: bytes | Path
    for name, (source, config, parallel) in {
        f"threads={cores} sequential": (weights, SessionConfig(threads=cores), 1),
        "threads=1 sequential": (weights, SessionConfig(threads=1), 1),
        f"threads=1 x {cores} sentences": (weights, SessionConfig(threads=1), cores),
        f"threads={cores} sequential spinning": (weights, SessionConfig(threads=cores, spinning=True), 1),
        f"fp32 dequantised, threads={cores} sequential": (fp32, SessionConfig(threads=cores), 1),
    }.items():
        model = KokoroModel(source, engine.model.vocab, config)
        variant = KokoroEngine(model, engine.packs, engine.default_voice, parallel)
        engine_loop(variant, 1)
        out[name] = {
            "paragraph_rtf": round(engine_loop(variant, repeats)["rtf"], 4),
            "one_sentence_requests_rtf": round(engine_loop(variant, repeats, paragraph=False)["rtf"], 4),
        }
    return out


if __name__ == "__main__":
    main()
