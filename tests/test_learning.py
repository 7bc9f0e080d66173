"""The background learner's bookkeeping (service/learning.py), without running a learner: what a
voice's learning state reads as, how request prompts are bounded, and how a deleted voice is
dropped. tests/integration/test_learning.py runs real learning on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.test_library import add
from voiceforge.audio.prompt import PromptAudio
from voiceforge.config import Settings
from voiceforge.engines.kokoro.learn.fit import Progress
from voiceforge.service.learning import META_KEY, Learning, LearnState, fraction
from voiceforge.voices.library import VoiceLibrary


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[VoiceLibrary]:
    library = VoiceLibrary(tmp_path / "data")
    yield library
    library.close()


def learning(lib: VoiceLibrary, queue: int = 2) -> Learning:
    def no_learner() -> object:
        raise AssertionError("the learner thread is not started in these tests")

    return Learning(Settings(learn_queue=queue), lib, no_learner)  # type: ignore[arg-type]


def prompt() -> PromptAudio:
    return PromptAudio(np.zeros(24_000, np.float32), 24_000, 24_000, 1.0, [(0.0, 1.0)])


def test_a_queued_voice_reads_queued_and_an_unqueued_one_reads_nothing(lib: VoiceLibrary) -> None:
    record = add(lib, "A")
    assert LearnState.of(record) is None
    queued = learning(lib).voice(record.id)
    assert LearnState.of(queued) == LearnState("queued") and LearnState.of(lib.get(record.id)) == LearnState(
        "queued"
    )


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"state": "learning", "progress": 7, "stage": "timbre"}, LearnState("learning", 1.0, "timbre")),
        ({"state": "learning", "progress": -3}, LearnState("learning", 0.0)),
        ({"state": "learning", "progress": "half"}, LearnState("learning", 0.0)),
        ({"state": "hacked"}, None),
        ("learned", None),
        ({"state": "failed", "error": 5}, LearnState("failed")),
    ],
)
def test_a_state_from_an_imported_voice_is_read_defensively(
    lib: VoiceLibrary, meta: object, expected: LearnState | None
) -> None:
    record = add(lib, "B", meta={META_KEY: meta})
    assert LearnState.of(record) == expected


def test_request_prompts_wait_in_a_bounded_queue(lib: VoiceLibrary, tmp_path: Path) -> None:
    learner = learning(lib, queue=2)
    assert learner.prompt("a", prompt(), "你好", "zh", tmp_path / "a.npz")
    assert learner.prompt("a", prompt(), "你好", "zh", tmp_path / "a.npz")  # already queued: once
    assert learner.prompt("b", prompt(), "hello", "en", tmp_path / "b.npz")
    assert not learner.prompt("c", prompt(), "hello", "en", tmp_path / "c.npz")  # the queue is full
    assert not learner.prompt("d", prompt(), "bonjour", "fr", tmp_path / "d.npz")  # no phrases for it
    assert learner.busy("prompt:a") and not learner.busy("prompt:c")
    record = add(lib, "C")
    learner.voice(record.id)  # saved voices are not bounded by the request queue
    assert learner.busy(f"voice:{record.id}")


def test_a_deleted_voice_leaves_the_queue(lib: VoiceLibrary) -> None:
    learner = learning(lib)
    record = add(lib, "D")
    learner.voice(record.id)
    learner.forget(record.id)
    assert not learner.busy(f"voice:{record.id}")


def test_overall_progress_runs_from_pitch_through_timbre() -> None:
    assert fraction(Progress("start", 0, 16)) == 0.0
    assert fraction(Progress("pitch", 10, 20)) == pytest.approx(1 / 6)
    assert fraction(Progress("timbre", 8, 16)) == pytest.approx(2 / 3)
    assert fraction(Progress("done", 12, 16)) == 1.0
