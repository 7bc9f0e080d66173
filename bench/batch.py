"""Batch throughput: a concurrency sweep of short items against a real `voiceforge serve`.

    python bench/batch.py [--items 100] [--levels 1,2,4,8,16] [--server-threads N] [--keep]

For each concurrency level the real batch runner (voiceforge.batch, the code behind `voiceforge
batch`) speaks ``--items`` short texts through POST /tts on loopback, every item a cache miss (a
fresh seed per level). Per level: total wall time, success rate, retries, items/s and audio seconds
produced per wall second, and its ratio to ``cores × single-stream engine speed`` (the raw engine
in this process, one thread, one sentence at a time, on the same texts; audio s per compute s).
The best level is the one with the most audio per wall second among those with 100 % success.
``--server-threads 1`` starts the server with VOICEFORGE_THREADS=1: one-thread model runs, one per
engine worker, side by side (the default gives each run every core, which suits single requests).
Prints JSON. Run it on an otherwise idle machine: other load on the cores shows in every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Server
from voiceforge.batch.manifest import load
from voiceforge.batch.runner import RemoteSynthesizer, run
from voiceforge.client import RetryPolicy
from voiceforge.config import Settings
from voiceforge.engines.base import SynthesisRequest, synthesize
from voiceforge.engines.kokoro import KokoroEngine

# Short texts as batch users send them (greetings, prompts, narration lines): zh, en, mixed.
TEXTS = [
    "您好，欢迎致电客服中心，请问有什么可以帮您？",
    "Thank you for calling. Your order has been shipped.",
    "本节课我们学习如何使用变量。",
    "Please hold while we connect you to an agent.",
    "今天的天气晴朗，适合出门散步。",
    "下一站是人民广场，请在右侧车门下车。",
    "Welcome back! Let's continue where we left off.",
    "感谢您的耐心等待，我们将尽快处理您的请求。",
    "Your verification code is valid for five minutes.",
    "这个视频将带你了解三个实用的小技巧。",
]


def single_stream(texts: list[str], threads: int) -> dict[str, float]:
    """The raw engine, one sentence at a time: audio seconds per compute second."""
    engine = KokoroEngine.from_settings(Settings(threads=threads, parallel=1))
    synthesize(engine, SynthesisRequest(text=texts[0]))  # warm-up
    audio = compute = 0.0
    for text in texts:
        result = synthesize(engine, SynthesisRequest(text=text, seed=7))
        audio += result.duration_s
        compute += result.compute_s
    return {"threads": threads, "audio_s": round(audio, 2), "compute_s": round(compute, 2),
            "speed": round(audio / compute, 3)}  # fmt: skip


def manifest(folder: Path, n: int, level: int) -> Path:
    path = folder / f"manifest-{level}.jsonl"
    rows = [
        # a number per level and item makes every item new to the cache (kokoro's key has no seed)
        {"id": f"item{i:03d}", "text": f"{TEXTS[i % len(TEXTS)]} {1000 * level + i}.", "format": "wav"}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


async def sweep_level(server: Server, folder: Path, n: int, level: int, voice: str) -> dict[str, Any]:
    items = load(manifest(folder, n, level), default_voice=voice)
    out = folder / f"out-{level}"
    synth = RemoteSynthesizer(server.url, connections=level)
    cpu_before = server.cpu_s()
    try:
        summary = await run(items, synth, out, concurrency=level, policy=RetryPolicy(attempts=8))
    finally:
        await synth.close()
    wall = summary.wall_s
    return {
        "concurrency": level,
        "items": n,
        "wall_s": round(wall, 2),
        "success_rate": round(summary.succeeded / n, 4),
        "retries": summary.attempts - summary.succeeded - summary.failed,
        "items_per_s": round(n / wall, 3),
        "audio_s": round(summary.audio_s, 2),
        "audio_s_per_wall_s": round(summary.audio_s / wall, 3),
        "server_cpu_s": round(server.cpu_s() - cpu_before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=100, help="items per concurrency level")
    parser.add_argument("--levels", default="1,2,4,8,16", help="concurrency levels, comma-separated")
    parser.add_argument("--server-threads", type=int, default=None, help="VOICEFORGE_THREADS for the server")
    parser.add_argument("--keep", action="store_true", help="keep the server's folder (logs, outputs)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    cores = os.cpu_count() or 1

    one_thread = single_stream(TEXTS, threads=1)
    all_threads = single_stream(TEXTS, threads=cores)
    home = Path(tempfile.mkdtemp(prefix="vf-bench-batch-"))
    env = {"VOICEFORGE_THREADS": str(args.server_threads)} if args.server_threads is not None else {}
    server = Server(home, env)
    try:
        import httpx

        voice = httpx.get(f"{server.url}/v1/voices", timeout=30).json()["voices"][0]["id"]
        results = []
        for level in levels:
            started = time.perf_counter()
            result = asyncio.run(sweep_level(server, home, args.items, level, voice))
            result["ratio_to_cores_x_single_stream"] = round(
                result["audio_s_per_wall_s"] / (cores * one_thread["speed"]), 3
            )
            result["ratio_to_all_core_single_stream"] = round(
                result["audio_s_per_wall_s"] / all_threads["speed"], 3
            )
            results.append(result)
            print(
                f"concurrency {level}: {time.perf_counter() - started:.1f} s",
                flush=True,
                file=sys.stderr,
            )
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    complete = [r for r in results if r["success_rate"] == 1.0] or results
    best = max(complete, key=lambda r: r["audio_s_per_wall_s"])
    print(
        json.dumps(
            {
                "cores": cores,
                "server_threads": args.server_threads or os.environ.get("VOICEFORGE_THREADS") or "auto",
                "single_stream_one_thread": one_thread,
                "single_stream_all_threads": all_threads,
                "target": "audio_s_per_wall_s >= 0.9 x cores x single-stream (one thread); 100 % success",
                "levels": results,
                "best_concurrency": best["concurrency"],
                "home": str(home) if args.keep else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
