"""The pieces of parallel-speech conversion: DTW alignment, the frame map, and profiles
enrolled before the frame map existed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.test_library import make_profile
from voiceforge.engines.kokoro.align import dtw_path
from voiceforge.engines.kokoro.convert import FrameMap
from voiceforge.engines.kokoro.enroll import spoken_prefix
from voiceforge.voices.profile import VoiceProfile


def test_dtw_finds_the_frames_a_slower_copy_repeats() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((80, 6))
    repeats = rng.integers(1, 4, size=len(a))  # each frame held 1–3 times
    b = np.repeat(a, repeats, axis=0) + 0.01 * rng.standard_normal((int(repeats.sum()), 6))
    path = dtw_path(a, b)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (len(a) - 1, len(b) - 1)
    assert (np.diff(path, axis=0) >= 0).all() and (np.diff(path, axis=0).sum(1) >= 1).all()
    source_of = np.repeat(np.arange(len(a)), repeats)
    assert (path[:, 0] == source_of[path[:, 1]]).mean() > 0.98


def test_open_end_dtw_stops_where_the_shorter_utterance_ends() -> None:
    rng = np.random.default_rng(2)
    b = np.repeat(rng.standard_normal((120, 6)), 2, axis=0)  # 240 frames; a says its first 150
    a = b[:150:2] + 0.01 * rng.standard_normal((75, 6))
    path = dtw_path(a, b, open_end=True)
    assert tuple(path[0]) == (0, 0) and path[-1][0] == len(a) - 1
    assert 146 <= path[-1][1] <= 152
    assert dtw_path(a, b)[-1][1] == len(b) - 1  # closed end: dragged to b's last frame


@pytest.mark.parametrize(
    ("share", "prefix"),
    [
        (1.0, "Some call me nature, others call me mother nature."),
        (0.4, "Some call me nature,"),  # 4 of 9 words, then the clause's comma
        (0.5, "Some call me nature, others"),  # 5: no clause ends within a fifth more
        (0.3, "Some call me nature,"),  # 3 words, and one more ends the clause
        (0.2, "Some call"),
    ],
)
def test_spoken_prefix_cuts_at_a_clause_or_a_word(share: float, prefix: str) -> None:
    assert spoken_prefix("Some call me nature, others call me mother nature.", share) == prefix


def test_spoken_prefix_counts_han_characters() -> None:
    assert spoken_prefix("希望你以后能够做的比我还好呦。", 0.5) == "希望你以后能够"
    assert spoken_prefix("希望你以后，能够做的比我还好呦。", 0.25) == "希望你以后，"


def test_dtw_refuses_an_empty_sequence() -> None:
    with pytest.raises(ValueError, match="empty"):
        dtw_path(np.zeros((0, 3)), np.zeros((5, 3)))


@pytest.mark.parametrize("kind", ["offsets", "regression"])
def test_frame_map_moves_frames_towards_the_other_speaker(kind: str) -> None:
    rng = np.random.default_rng(1)
    d = 39
    transform = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    sounds = rng.standard_normal((20, d))  # speech frames cluster around the sounds of a language

    def frames_of(n: int) -> np.ndarray:
        return sounds[rng.integers(0, len(sounds), n)] + 0.2 * rng.standard_normal((n, d))

    x = frames_of(600)
    y = x @ transform + 0.5 + 0.05 * rng.standard_normal((600, d))
    if kind == "offsets":
        frames = FrameMap.offsets(x, y, neighbours=16)
    else:
        frames = FrameMap.regression(x, y, ridge=0.1)
    unseen = frames_of(200)
    truth = unseen @ transform + 0.5
    mapped = frames.apply(unseen)
    assert mapped.shape == unseen.shape
    assert np.abs(mapped - truth).mean() < 0.6 * np.abs(unseen - truth).mean()


def test_a_version_1_profile_loads_as_statistics_only() -> None:
    current = make_profile()
    with np.load(io.BytesIO(current.to_bytes())) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith("frame_")}
    meta = json.loads(str(arrays.pop("meta")))
    meta.pop("frame_neighbours")
    meta["version"] = 1
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
    old = VoiceProfile.from_bytes(buf.getvalue())
    assert old.frame_weights.size == 0 and old.frame_neighbours == 0
    assert old.base_voice == current.base_voice and np.array_equal(old.style, current.style)
    assert VoiceProfile.from_bytes(old.to_bytes()).digest() == old.digest()
