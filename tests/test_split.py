from voiceforge.text.split import (
    SENTENCE_END,
    cut,
    dominant_language,
    language_runs,
    split_clauses,
    split_sentences,
    split_words,
)


def test_sentences_keep_punctuation_and_numbers():
    assert split_sentences("今天很好。明天呢？OK! Pi is 3.14 today. Done") == [
        "今天很好。",
        "明天呢？",
        "OK! ",
        "Pi is 3.14 today. ",
        "Done",
    ]


def test_closing_quotes_stay_with_their_sentence():
    assert split_sentences("他说：“走吧。”然后走了。") == ["他说：“走吧。”", "然后走了。"]


def test_newline_ends_a_sentence():
    assert split_sentences("第一行\n第二行") == ["第一行\n", "第二行"]


def test_cut_round_trips():
    text = "a. b! c? 好。"
    assert "".join(cut(text, SENTENCE_END)) == text


def test_clauses():
    assert split_clauses("一，二、三：四") == ["一，", "二、", "三：", "四"]


def test_words_halve_at_the_space_nearest_the_middle():
    assert split_words("one two three four") == ["one two", " three four"]
    assert split_words("abcdef") == ["abc", "def"]
    assert split_words("a") == ["a"]


def test_language_runs_mixed():
    assert language_runs("今天天气很好, let's go to the park.") == [
        ("zh", "今天天气很好, "),
        ("en", "let's go to the park."),
    ]
    assert language_runs("用Python写代码") == [("zh", "用"), ("en", "Python"), ("zh", "写代码")]
    assert language_runs("...") == [("en", "...")]


def test_dominant_language():
    assert dominant_language("今天天气很好, let's go") == "zh"
    assert dominant_language("Hello world, 你") == "en"
    assert dominant_language("123") == "en"
