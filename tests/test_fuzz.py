"""Hostile text through the whole frontend (markup → normalisation → split → G2P): 1000 inputs.

Whatever arrives (RTL marks, zero-width joiners, combining marks, lone surrogates, control
characters, markup fragments, digits and currency mixed into Chinese), the frontend either
returns sentences whose phonemes the model knows or raises InvalidInput; never anything else.
The decoder and the markup parser have their own fuzzers (test_decode.py, test_markup.py).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voiceforge.engines.kokoro.model import MAX_TOKENS, bundled_vocab
from voiceforge.errors import InvalidInput
from voiceforge.text.frontend import Frontend

pytestmark = pytest.mark.slow

EDGE = [
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte-order mark
    "\u0301",  # combining acute accent
    "\u0645\u0631\u062d\u0628\u0627",  # Arabic
    "\ud800",  # a lone surrogate: valid in a Python str, invalid in UTF-8
    "\x00",
    "\x1b[31m",
    "\r\n",
    "\t",
    "😀",
    "👨\u200d👩\u200d👧",
    "[",
    "]",
    "[j][ǐ]",
    "[hao4]",
    "[M][AY0]",
    "[breath]",
    "<strong>",
    "</strong>",
    "<|endofprompt|>",
    "3.5%",
    "¥120",
    "$3.50",
    "2024年3月5日",
    "10:30",
    "13812345678",
    "Dr.",
    "１２３",  # full-width digits
    "ｈｅｌｌｏ",  # full-width letters
]
WORDS = ["今天", "天气", "很好", "。", "，", "hello", "world", ".", ",", " ", "!", "？", "还", "a"]

hostile = st.lists(
    st.one_of(
        st.sampled_from(EDGE),
        st.sampled_from(WORDS),
        st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
    ),
    max_size=24,
).map("".join)


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return Frontend(max_tokens=MAX_TOKENS)


@pytest.fixture(scope="module")
def vocab() -> set[str]:
    return set(bundled_vocab())


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=hostile)
def test_hostile_text_is_spoken_or_refused_clearly(frontend: Frontend, vocab: set[str], text: str) -> None:
    try:
        sentences = frontend.prepare(text)
    except InvalidInput as e:
        assert e.message and "Traceback" not in e.message
        return
    except Exception as e:  # name the input readably: it may hold control characters
        raise AssertionError(f"{type(e).__name__} for {text!r}") from e
    for sentence in sentences:
        assert set(sentence.phonemes) <= vocab, (text, sentence.phonemes)
