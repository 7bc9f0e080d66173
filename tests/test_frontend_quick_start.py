"""Frontend.plan(quick_start=True): the first sentence cut after a clause or between words, only
where that is safe."""

from __future__ import annotations

import pytest

from voiceforge.text.frontend import Frontend
from voiceforge.text.markup import Plain


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return Frontend()


def _texts(frontend: Frontend, text: str, quick_start: bool) -> list[str]:
    plan = frontend.plan(text, quick_start=quick_start)
    return ["".join(s.text for s in g if isinstance(s, Plain)).strip() for g in plan.groups]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The first clause holds a third of the sentence: cut there; later sentences stay whole.
        (
            "今天天气很好，我们一起去公园散步吧。然后吃饭，好吗？",
            ["今天天气很好，", "我们一起去公园散步吧。", "然后吃饭，好吗？"],
        ),
        (
            "If the weather holds, we will walk. Bring a coat.",
            ["If the weather holds,", "we will walk.", "Bring a coat."],
        ),
        # Too short a first clause (the rest would not be ready before it has played): a third,
        # cut between words instead.
        (
            "Hello there, and welcome to the voiceforge service. Hi.",
            ["Hello there, and", "welcome to the voiceforge service.", "Hi."],
        ),
        # No clause boundary: six words or more are cut between words at a third; fewer stay whole.
        (
            "The first sentence leaves before the second is made. Then more.",
            ["The first sentence", "leaves before the second is made.", "Then more."],
        ),
        ("The weather is nice today. Let's go.", ["The weather is nice today.", "Let's go."]),
        # Chinese without a comma has no spaces to cut at: whole.
        ("今天天气很好我们一起去公园散步吧。", ["今天天气很好我们一起去公园散步吧。"]),
    ],
)
def test_quick_start_cuts_only_the_first_sentence(frontend: Frontend, text: str, expected: list[str]) -> None:
    assert _texts(frontend, text, quick_start=True) == expected
    joined = "".join(_texts(frontend, text, quick_start=True))
    assert joined.replace(" ", "") == "".join(_texts(frontend, text, quick_start=False)).replace(" ", "")


def test_without_quick_start_nothing_changes(frontend: Frontend) -> None:
    assert _texts(frontend, "If the weather holds, we will walk.", quick_start=False) == [
        "If the weather holds, we will walk."
    ]
