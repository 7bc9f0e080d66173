"""`voiceforge` run as a user runs it: a subprocess, real model, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from voiceforge.engines.kokoro.catalog import DEFAULTS

pytestmark = pytest.mark.slow


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "voiceforge", *args],
        input=stdin, capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip


def decoded_seconds(path: Path) -> float:
    with av.open(str(path)) as f:
        stream = f.streams.audio[0]
        samples = sum(frame.samples for frame in f.decode(stream))
        return samples / stream.rate


def test_say_writes_a_wav(tmp_path):
    out = tmp_path / "a.wav"
    proc = run("say", "今天天气很好, let's go to the park.", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert decoded_seconds(out) > 1.5
    assert "wrote" in proc.stderr


def test_say_reads_stdin_and_a_file_and_writes_mp3(tmp_path):
    out = tmp_path / "b.mp3"
    proc = run(
        "say", "-o", str(out), "--voice", "jm_kumo", "--speed", "1.2", "--seed", "7", stdin="Hello there."
    )
    assert proc.returncode == 0, proc.stderr
    assert decoded_seconds(out) > 0.3
    text_file = tmp_path / "in.txt"
    text_file.write_text("第一句。第二句。", encoding="utf-8")
    out2 = tmp_path / "c.flac"
    proc = run("say", "--file", str(text_file), "-o", str(out2))
    assert proc.returncode == 0, proc.stderr
    assert decoded_seconds(out2) > 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["say", "", "-o", "{tmp}/x.wav"], "nothing to speak"),
        (["say", "!!!", "-o", "{tmp}/x.wav"], "nothing to speak"),
        (["say", "hi", "--speed", "9", "-o", "{tmp}/x.wav"], "speed 9.0 is out of range"),
        (["say", "hi", "--seed", "0", "-o", "{tmp}/x.wav"], "seed 0 is out of range"),
        (["say", "hi [zz][q9]", "-o", "{tmp}/x.wav"], "[zz]"),
        (["say", "hi", "-o", "/nonexistent-dir/x.wav"], "does not exist"),
        (["say", "hi", "-o", "{tmp}"], "is a directory"),
        (["say", "hi", "--format", "xyz", "-o", "{tmp}/x.wav"], "unknown audio format 'xyz'"),
        (["say", "hi", "--voice", "nobody", "-o", "{tmp}/x.wav"], "unknown voice 'nobody'"),
    ],
)
def test_user_mistakes_are_one_line_not_a_traceback(tmp_path, args, message):
    proc = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


def test_voices_lists_the_stock_voices_for_people():
    proc = run("voices", "list")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert "Alpha (Japanese, female)" in lines["jf_alpha"]
    assert "Qinghe (Chinese, female)" in lines["zf_qinghe"] and "Maple (English, female)" in lines["af_maple"]
    assert "(default for " in lines[DEFAULTS["zh"][0]] and "zh" in lines[DEFAULTS["zh"][0]]
    assert run("voices").stdout == proc.stdout  # `voices` alone lists too


def test_doctor_reports_every_model_ok():
    proc = run("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok ") >= 4 and "FAIL" not in proc.stdout


def test_saving_a_voice_needs_consent(tmp_path, shared_audio):
    env = {"VOICEFORGE_DATA_DIR": str(tmp_path / "data")}
    proc = run("voices", "add", "Unasked", str(shared_audio / "en_prompt_f5.wav"), env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--consent" in proc.stderr and "agreed to be cloned" in proc.stderr
    assert "Unasked" not in run("voices", env=env).stdout


def test_clone_a_voice_save_it_and_speak_with_it(tmp_path, shared_audio):
    # learned by default (two steps of each kind here; bench/learned.py measures full learning)
    env = {"VOICEFORGE_DATA_DIR": str(tmp_path / "data"), "VOICEFORGE_LEARN_STEPS": "2",
           "VOICEFORGE_LEARN_PITCH_STEPS": "2"}  # fmt: skip
    prompt = str(shared_audio / "zh_prompt_cosyvoice.wav")
    proc = run("voices", "add", "小希", prompt, "--consent", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "saved 小希" in proc.stdout and "(asr)" in proc.stdout and "learned style" in proc.stdout
    listed = run("voices", env=env)
    assert "小希" in listed.stdout and "cloned" in listed.stdout and " learned " in listed.stdout
    out = tmp_path / "clone.wav"
    proc = run("say", "Hello from a cloned voice.", "--voice", "小希", "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert decoded_seconds(out) > 1.0
    archive = tmp_path / "v.zip"
    assert run("voices", "export", "小希", "-o", str(archive), env=env).returncode == 0
    assert run("voices", "rm", "小希", env=env).returncode == 0
    proc = run("voices", "import", str(archive), "--name", "again", env=env)
    assert proc.returncode == 0 and "imported again" in proc.stdout, proc.stderr
    assert " learned " in next(line for line in run("voices", env=env).stdout.splitlines() if "again" in line)


def test_fast_enrollment_skips_learning(tmp_path, shared_audio):
    env = {"VOICEFORGE_DATA_DIR": str(tmp_path / "data")}
    prompt = str(shared_audio / "en_prompt_f5.wav")
    proc = run("voices", "add", "Nature", prompt, "--consent", "--fast", "--transcript",
               "Some call me nature, others call me mother nature.", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "learned style" not in proc.stdout and " enrolled " in run("voices", env=env).stdout


def test_a_too_short_prompt_is_one_clear_line(tmp_path, shared_audio):
    prompt = str(shared_audio / "en_ljspeech_LJ001-0002_short.wav")
    proc = run("say", "hi", "--prompt", prompt, "-o", str(tmp_path / "x.wav"))
    assert proc.returncode == 2
    assert "1.9 s of speech; at least 3 s is needed" in proc.stderr
    assert "Traceback" not in proc.stderr
