"""Live transcription latency, one run: from the end of speech to its final text, over a WebSocket.

    python bench/live.py [--audio ../shared/audio] [--frame-ms 100]

Starts a real `voiceforge serve` on loopback, then for each clip in ../shared/audio (3 s or
longer) streams it at real-time pace in ``--frame-ms`` frames, followed by 1.5 s of silence, as a
microphone would. The end of speech is where silero VAD says the clip's last speech ends; the
latency is the time from sending that sample to receiving the utterance's final. It includes the
0.6 s of silence that tells an utterance has ended (service/live.END_SILENCE_S) and Whisper's
time on the utterance. Prints JSON: per clip and the mean, and whether each final's text is the
clip's own transcript (CER/WER against the manifest, as a check that the latency is of real work).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr
from websockets.sync.client import connect

from common import Server
from voiceforge.asr.scoring import cer, wer
from voiceforge.audio.vad import speech_segments

RATE = 16000


def measure(server: Server, audio: np.ndarray, frame_ms: int) -> tuple[float, str]:
    speech_end = speech_segments(audio)[-1][1]
    pcm = (np.clip(np.concatenate([audio, np.zeros(int(1.5 * RATE), np.float32)]), -1, 1) * 32767).astype(
        "<i2"
    )
    frame = RATE * frame_ms // 1000
    url = server.url.replace("http", "ws", 1) + f"/v1/audio/live?sample_rate={RATE}"
    with connect(url) as ws:
        json.loads(ws.recv(timeout=30))
        started = time.perf_counter()
        ended_at = None
        finals = []
        for i in range(0, len(pcm), frame):
            due = started + i / RATE
            time.sleep(max(0.0, due - time.perf_counter()))  # real-time pace
            ws.send(pcm[i : i + frame].tobytes())
            if ended_at is None and (i + frame) / RATE >= speech_end:
                ended_at = time.perf_counter()
            while True:
                try:
                    event = json.loads(ws.recv(timeout=0))
                except TimeoutError:
                    break
                if event["type"] == "final":
                    finals.append((time.perf_counter(), event["text"], event["end"]))
        while not finals or finals[-1][2] < speech_end - 0.3:  # the final of the last words
            event = json.loads(ws.recv(timeout=60))
            if event["type"] == "final":
                finals.append((time.perf_counter(), event["text"], event["end"]))
    assert ended_at is not None
    return finals[-1][0] - ended_at, " ".join(text for _, text, _ in finals)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default = os.environ.get(
        "VOICEFORGE_SHARED_AUDIO", str(Path(__file__).parents[1].parent / "shared/audio")
    )
    parser.add_argument("--audio", type=Path, default=Path(default))
    parser.add_argument("--frame-ms", type=int, default=100)
    args = parser.parse_args()
    clips = json.loads((args.audio / "manifest.json").read_text(encoding="utf-8"))["clips"]
    server = Server(Path(tempfile.mkdtemp(prefix="voiceforge-live-")))
    report: dict[str, object] = {"frame_ms": args.frame_ms, "load_avg_before": os.getloadavg()[0]}
    latencies = []
    try:
        for clip in clips:
            if clip["duration_s"] < 3:
                continue
            audio, rate = soundfile.read(args.audio / clip["file"], dtype="float32", always_2d=True)
            audio = soxr.resample(audio.mean(axis=1), rate, RATE).astype(np.float32)
            latency, text = measure(server, audio, args.frame_ms)
            latencies.append(latency)
            report[clip["file"]] = {
                "speech_s": round(len(audio) / RATE, 2),
                "latency_s": round(latency, 3),
                "cer" if clip["language"] == "zh" else "wer": round(
                    (cer if clip["language"] == "zh" else wer)(clip["transcript"], text), 3
                ),
                "text": text,
            }
    finally:
        server.stop()
    report["mean_latency_s"] = round(statistics.mean(latencies), 3)
    report["load_avg_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
