"""Progressive enrollment, one run: how fast a new prompt first speaks, how long its voice takes
to learn in the background, and what that learning costs the requests served meanwhile.

    python bench/progressive.py [--prompts zh_prompt_cosyvoice.wav,en_prompt_f5.wav] [--requests 6]

A real `voiceforge serve` on loopback, warmed up (the stock voices' calibration speech rendered,
as `serve` does at start). For each prompt, sequentially:
(a) the first POST /tts with the new prompt: wall time (target <= 10 s on 2 cores), quick enrollment
    included;
(b) /tts latency of short stock-voice sentences (every one a cache miss) while the voice is learned,
    against the same before any learning (the ratio says what the learner takes from serving);
(c) seconds until the learned profile is written (target <= 180 s per voice on 2 idle cores), and
    the second POST /tts with the same prompt (it speaks with the learned voice: a cache miss).
Prints JSON. Run it on an otherwise idle machine: other load shows up in every figure.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from common import Server

SENTENCES = ["第{n}句，服务照常进行。", "Sentence {n} is served as usual."]
SPOKEN = {"zh": "我们下周一起去海边看日出吧。", "en": "Let's watch the sunrise by the sea."}
CLIPS = Path(__file__).resolve().parents[2] / "shared" / "audio"


def latencies(client: httpx.Client, count: int, start: int) -> list[float]:
    """Wall seconds of ``count`` short stock-voice /tts requests, each a cache miss."""
    walls = []
    for n in range(start, start + count):
        text = SENTENCES[n % 2].format(n=n)
        began = time.perf_counter()
        r = client.post("/tts", json={"text": text})
        walls.append(time.perf_counter() - began)
        assert r.status_code == 200 and not r.json()["cached"], r.text
    return walls


def one_prompt(
    server: Server, clip: Path, transcript: str, requests: int, counter: list[int]
) -> dict[str, Any]:
    body = {
        "text": "我们下周一起去海边看日出吧。"
        if clip.name.startswith("zh")
        else "Let's watch the sunrise by the sea.",
        "prompt_audio": base64.b64encode(clip.read_bytes()).decode(),
        "prompt_text": transcript,
    }
    clones = server.home / "data" / "clones"
    before = set(clones.glob("*.learned.npz"))
    with httpx.Client(base_url=server.url, timeout=900) as client:
        idle = latencies(client, requests, counter[0])
        counter[0] += requests
        began = time.perf_counter()
        first = client.post("/tts", json=body)
        first_s = time.perf_counter() - began
        assert first.status_code == 200, first.text
        busy: list[float] = []
        while not set(clones.glob("*.learned.npz")) - before:
            busy += latencies(client, 1, counter[0])
            counter[0] += 1
            time.sleep(1.0)
            assert time.perf_counter() - began < 1800, "learning took over 30 minutes"
        learned_s = time.perf_counter() - began
        second = client.post("/tts", json=body)
        assert second.status_code == 200 and not second.json()["cached"], second.text
    return {
        "prompt": clip.name,
        "first_answer_s": round(first_s, 2),
        "learned_after_s": round(learned_s, 1),
        "tts_p50_idle_s": round(statistics.median(idle), 3),
        "tts_p50_while_learning_s": round(statistics.median(busy), 3) if busy else None,
        "tts_p50_ratio": round(statistics.median(busy) / statistics.median(idle), 2) if busy else None,
        "tts_max_while_learning_s": round(max(busy), 3) if busy else None,
        "requests_while_learning": len(busy),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "audio"
    )
    parser.add_argument("--prompts", default="zh_prompt_cosyvoice.wav,en_prompt_f5.wav")
    parser.add_argument("--requests", type=int, default=6, help="idle /tts requests per prompt")
    args = parser.parse_args()
    manifest = {c["file"]: c for c in json.loads((args.clips / "manifest.json").read_text())["clips"]}
    with tempfile.TemporaryDirectory(prefix="vf-progressive-") as tmp:
        env = {"VOICEFORGE_WARM_CLONING": "1", "VOICEFORGE_LEARN_VOICES": "1"}
        server = Server(Path(tmp), env)
        try:
            deadline = time.monotonic() + 600
            while "cloning warmed up in" not in server.log.read_text(errors="replace"):
                assert time.monotonic() < deadline, "cloning warm-up did not finish in 10 minutes"
                time.sleep(1.0)
            counter = [0]
            results = [
                one_prompt(server, args.clips / name, manifest[name]["transcript"], args.requests, counter)
                for name in args.prompts.split(",")
            ]
            rss_now, rss_peak = server.rss_mb()
        finally:
            server.stop()
    print(json.dumps({"prompts": results, "rss_mb": rss_now, "rss_peak_mb": rss_peak,
                      "targets": {"first_answer_s": 10, "learned_after_s": 180}}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
