"""Batch manifests (CSV and JSON Lines) and the results file; runs are in tests/integration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voiceforge.batch.manifest import ManifestError, check, load
from voiceforge.batch.results import Result, ResultsFile
from voiceforge.errors import InvalidInput


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_csv_manifest(tmp_path: Path) -> None:
    (tmp_path / "me.wav").write_bytes(b"RIFF")
    manifest = _write(
        tmp_path / "m.csv",
        "id,text,voice,prompt,mode,instruct,seed,speed,format\n"
        'greet-1,"你好，欢迎光临。",zf_xiaobei,,,,7,1.2,mp3\n'
        "greet-2,Hello there.,,me.wav,zero_shot,,,,\n"
        "greet-3,慢一点说。,zf_xiaobei,,instruct,slower,,,\n",
    )
    items = load(manifest)
    assert [i.id for i in items] == ["greet-1", "greet-2", "greet-3"]
    first, second, _ = items
    assert (first.text, first.seed, first.speed, first.format, first.filename) == (
        "你好，欢迎光临。", 7, 1.2, "mp3", "greet-1.mp3"
    )  # fmt: skip
    assert second.prompt == (tmp_path / "me.wav").resolve() and second.voice is None
    assert (second.seed, second.speed, second.format) == (1, 1.0, "wav")  # blank cells take defaults
    assert first.fingerprint() != second.fingerprint()


def test_bad_rows_are_all_reported_with_their_line_numbers(tmp_path: Path) -> None:
    manifest = _write(
        tmp_path / "m.jsonl",
        "\n".join(
            [
                json.dumps({"id": "ok", "text": "好的。", "voice": "zf_xiaobei"}),
                json.dumps({"id": "novoice", "text": "没有声音。"}),
                json.dumps({"id": "long", "text": "长" * 300, "voice": "zf_xiaobei"}),
                json.dumps({"id": "seed", "text": "种子。", "voice": "zf_xiaobei", "seed": "abc"}),
                "",
                '{"id": "broken", ',
                json.dumps({"id": "zero", "text": "零。", "voice": "zf_xiaobei", "seed": 0}),
                json.dumps({"id": "ok", "text": "again", "voice": "zf_xiaobei"}),
                json.dumps({"id": "bad id!", "text": "x", "voice": "v", "colour": "red"}),
                json.dumps({"id": "p", "text": "x", "prompt": "missing.wav"}),
            ]
        ),
    )
    with pytest.raises(ManifestError) as caught:
        load(manifest)
    lines = {p.line: p.message for p in caught.value.problems}
    assert set(lines) == {3, 4, 6, 7, 8, 9, 10}  # line 2 speaks with the default voice
    assert "300 characters" in lines[3] and "at most 200" in lines[3]
    assert "seed" in lines[4] and "'abc'" in lines[4]
    assert "not valid JSON" in lines[6]
    assert "seed" in lines[7] and "greater than or equal to 1" in lines[7]
    assert "used again (first on line 1)" in lines[8]
    assert "missing.wav" in lines[10]
    message = str(caught.value)
    assert "line 3: text is 300 characters" in message and message.index("line 3") < message.index("line 10")


def test_check_keeps_the_valid_rows_and_names_each_invalid_one(tmp_path: Path) -> None:
    manifest = _write(
        tmp_path / "m.csv",
        "id,text,voice\nplain,只有文字。,\nlong," + "长" * 201 + ",\nplain,again,\n,no id,\n",
    )
    items, problems = check(manifest)
    assert [(i.id, i.voice) for i in items] == [("plain", None)]  # no voice: the default one
    assert [(p.line, p.label) for p in problems] == [(3, "long"), (4, "plain@line4"), (5, "line 5")]


def test_a_default_voice_fills_rows_without_one(tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "id,text\na,你好。\n")
    assert load(manifest, default_voice="zf_xiaobei")[0].voice == "zf_xiaobei"


def test_csv_header_problems(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="line 1: the header row must name"):
        load(_write(tmp_path / "m.csv", "name,words\na,b\n"))
    with pytest.raises(ManifestError, match="unknown column"):
        load(_write(tmp_path / "n.csv", "id,text,voice,colour\na,b,c,d\n"))
    with pytest.raises(InvalidInput, match=r"use a \.csv"):
        load(_write(tmp_path / "m.txt", "id,text\n"))
    with pytest.raises(InvalidInput, match="does not exist"):
        load(tmp_path / "absent.csv")


def test_results_file_survives_a_torn_line_and_keeps_the_latest(tmp_path: Path) -> None:
    results = ResultsFile(tmp_path)
    results.append(Result("a", "failed", None, None, 3, "busy", "overloaded"))
    (tmp_path / "a.wav").write_bytes(b"x")
    results.append(Result("a", "succeeded", "a.wav", 1.5, 1, None))
    with results.path.open("a") as f:
        f.write('{"id": "b", "status": "succ')  # a crash mid-write
    loaded = results.load()
    assert set(loaded) == {"a"} and results.done(loaded["a"])
    results.append(Result("c", "succeeded", "c.wav", 1.0, 1, None))  # closes the torn line first
    loaded = results.load()
    assert set(loaded) == {"a", "c"} and not results.done(loaded["c"])  # c.wav is not there
    results.compact()
    assert len(results.path.read_text().splitlines()) == 2
