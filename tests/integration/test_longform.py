"""Long-form jobs against a real server: a 2 000-character Chinese chapter becomes audio plus
SRT/VTT whose cues are the sentences, in order, timed to the audio; a sentence the engine fails
on is retried, not skipped; bad chapters are refused at submit."""

from __future__ import annotations

import io
import itertools
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.integration.conftest import Server
from voiceforge import errors
from voiceforge.audio.join import speech_level_db
from voiceforge.client import Client
from voiceforge.text.subtitles import parse_srt

pytestmark = pytest.mark.slow

# Twenty distinct sentences, cycled into paragraphs of four. A repeated sentence is synthesised
# once per job (same voice, seed and text give the same audio), which keeps this test to about a
# minute; every one of the ~68 sentences still gets its own cue, pause, level and timing.
SENTENCES = [
    "清晨的阳光洒在小镇的石板路上，街边的早餐铺已经飘出了豆浆和油条的香味。",
    "李老师每天六点起床，先在河边散步半个小时，然后回家准备上课要用的讲义。",
    "她常说，教书最重要的不是讲了多少，而是学生真正听懂了多少。",
    "这一天，班上来了一个新同学，他个子不高，说话的声音却很响亮。",
    "新同学叫王明，从南方的一座海边城市搬来，对这里的一切都感到好奇。",
    "下课的时候，同学们围在他身边，问他海边是不是每天都能看到大船。",
    "王明笑着回答，大船并不常见，但是渔民的小船每天清早都会出海。",
    "他还说，退潮以后可以在沙滩上捡到贝壳，运气好的话还能看到小螃蟹。",
    "大家听得入了迷，连上课铃响了都没有注意到。",
    "李老师走进教室，看见这热闹的场面，并没有批评任何人。",
    "她把话题接了过来，请王明给全班讲一讲潮汐是怎么形成的。",
    "王明有些紧张，但还是认真地讲了月亮和地球之间的引力。",
    "讲完以后，教室里响起了热烈的掌声，他的脸一下子红了。",
    "从那以后，王明很快就交到了新朋友，也慢慢习惯了北方干燥的天气。",
    "冬天来临的时候，小镇下了第一场雪，孩子们兴奋地跑到操场上堆雪人。",
    "王明第一次见到这么大的雪，他伸出手接住雪花，看着它们在掌心慢慢融化。",
    "李老师站在窗前看着孩子们玩耍，心里想着明年春天要带他们去郊外种树。",
    "日子就这样一天天过去，平凡而又充实。",
    "多年以后，王明成了一名海洋研究员，常常在船上度过好几个月。",
    "每当夜深人静的时候，他总会想起那个下雪的冬天，想起讲台上温和的李老师。",
]


def chapter(chars: int) -> tuple[str, list[str]]:
    """About ``chars`` characters in paragraphs of four sentences, and the sentences in order."""
    spoken: list[str] = []
    while sum(map(len, spoken)) < chars:
        spoken.append(SENTENCES[len(spoken) % len(SENTENCES)])
    paragraphs = ["".join(spoken[i : i + 4]) for i in range(0, len(spoken), 4)]
    return "\n\n".join(paragraphs), spoken


def _audio(client: Client, url: str) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(client.download(url)), dtype="float32")
    return samples, rate


def test_a_chinese_chapter_becomes_audio_with_matching_subtitles(server: Server) -> None:
    text, spoken = chapter(2000)
    assert len(text) >= 2000
    with Client(server.url) as client:
        job = client.create_job("longform", text=text, speed=2.0)
        stages = {j.stage for j in client.job_events(job.id)}
        done = client.wait_job(job.id)
        result = done.result
        assert result is not None and result["sentences"] == len(spoken)
        samples, rate = _audio(client, result["audio_url"])
        srt = client.download(result["srt_url"]).decode()
        vtt = client.download(result["vtt_url"]).decode()
    assert sum(s.startswith("sentence ") for s in stages) >= 3  # progress is reported per sentence
    cues = parse_srt(srt)
    assert [c.text for c in cues] == spoken  # one cue per sentence, in order
    assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == len(spoken)
    duration = len(samples) / rate
    assert duration == pytest.approx(result["duration"], abs=0.01)
    assert cues[0].start == 0 and cues[-1].end == pytest.approx(duration, abs=0.01)
    for before, after in itertools.pairwise(cues):
        assert before.start < before.end <= after.start  # in order, no overlap, pauses between
    # Timings come from the audio: every cue holds speech, every gap between cues is quiet.
    measured = [speech_level_db(samples[int(c.start * rate) : int(c.end * rate)], rate) for c in cues]
    levels = [level for level in measured if level is not None]
    assert len(levels) == len(cues)
    spread = max(levels) - min(levels)
    assert spread < 6, f"sentence loudness differs by {spread:.1f} dB"
    for before, after in itertools.pairwise(cues):
        gap = samples[int(before.end * rate) + 1 : int(after.start * rate) - 1]
        assert gap.size == 0 or float(np.abs(gap).max()) < 0.01


def test_bad_chapters_are_refused_at_submit(server: Server) -> None:
    with Client(server.url) as client:
        with pytest.raises(errors.InvalidInput, match="no_such_voice"):
            client.create_job("longform", text="你好。", voice="no_such_voice")
        with pytest.raises(errors.InvalidInput, match="nothing to speak"):
            client.create_job("longform", text="。。。\n\n……")
        with pytest.raises(errors.InvalidInput, match="sentence 2"):
            client.create_job("longform", text="第一句。第二句有坏标记[zz][qq]。")


def test_a_sentence_the_engine_fails_on_is_retried(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    fault = tmp_path / "fault.json"
    server = start_server(VOICEFORGE_FAULT_FILE=str(fault))
    text = "第一句话。第二句话。第三句话。第四句话。第五句话。第六句话。"
    with Client(server.url) as client:
        job = client.create_job("longform", text=text)
        deadline = time.monotonic() + 120
        while "sentence 2/6" not in (stage := client.job(job.id).stage) and time.monotonic() < deadline:
            assert not stage.startswith(("sentence 5", "sentence 6")), "missed the moment to inject"
            time.sleep(0.05)
        part = tmp_path / "fault.part"
        part.write_text(json.dumps({"mode": "garbage", "rate": 1.0}))
        part.replace(fault)  # the engine now returns NaN audio: each sentence fails
        while "retrying" not in server.log and time.monotonic() < deadline:
            time.sleep(0.05)
        fault.unlink()  # the engine heals before the retry (it waits a second)
        done = client.wait_job(job.id, timeout=120)
        assert done.result is not None
        samples, rate = _audio(client, done.result["audio_url"])
        cues = parse_srt(client.download(done.result["srt_url"]).decode())
    assert "invalid audio (NaN/inf)" in server.log and "retrying" in server.log
    assert [c.text for c in cues] == [f"第{n}句话。" for n in "一二三四五六"]  # none skipped
    assert np.isfinite(samples).all()
    for cue in cues:
        assert speech_level_db(samples[int(cue.start * rate) : int(cue.end * rate)], rate) is not None


def test_a_chapter_interrupted_by_a_crash_continues_where_it_stopped(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = start_server(home)
    text = "".join(f"这是第{n}句话。" for n in "一二三四五六七八")
    with Client(first.url) as client:
        job = client.create_job("longform", text=text)
        deadline = time.monotonic() + 120
        while not client.job(job.id).stage.startswith(("sentence 4/", "sentence 5/")):
            assert time.monotonic() < deadline and not client.job(job.id).finished
            time.sleep(0.05)
    first.stop(signal.SIGKILL)  # mid-chapter, no chance to clean up
    second = start_server(home)
    with Client(second.url) as client:
        done = client.wait_job(job.id, timeout=120)
        assert done.attempts == 2 and done.result is not None
        cues = parse_srt(client.download(done.result["srt_url"]).decode())
    assert [c.text for c in cues] == [f"这是第{n}句话。" for n in "一二三四五六七八"]
    assert f"[{job.id}] sentence 1/8 saved by an earlier attempt" in second.log
    assert f"[{job.id}] sentence 3/8 saved by an earlier attempt" in second.log
    assert not list(home.rglob("*.npz"))  # checkpoints are removed once the chapter is saved
