"""Written forms → spoken words, read in the language of their surroundings.

Every number-like form (date, time, phone number, money, percentage, measure, plain number) is found
in one left-to-right pass. A form whose nearest letter is a Han character becomes Chinese characters
there and then; the others are left for the English pass, which hands each run of non-Han text to
hibari's normaliser and then spells out the numbers hibari leaves for its lexicon, so the G2P after
this stage sees only words.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cn2an
from hibari.g2p import normalize as hibari_normalize
from hibari.g2p import numbers as en_numbers

from voiceforge.text.split import HAN_RANGES

Lang = Literal["zh", "en"]

_HAN = HAN_RANGES
_HAN_RE = re.compile(f"[{_HAN}]")
_LETTER_RE = re.compile(f"([{_HAN}])|[A-Za-zÀ-ÖØ-öø-ÿ]")
_NON_HAN_RUN_RE = re.compile(f"[^{_HAN}\n]+")
_ALNUM_RE = re.compile("[A-Za-z0-9]")

# Full-width ASCII → half-width, except the marks the sentence splitter reads as Chinese boundaries.
_KEEP_FULLWIDTH = set("！，？；：（）")
_HALF_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F) if chr(c) not in _KEEP_FULLWIDTH}
_HALF_WIDTH |= {0x3000: 0x20, 0xFFE1: ord("£"), 0xFFE5: ord("¥")}

# ASCII digits only: `\d` also matches Arabic-Indic and other digits that cn2an cannot read.
_NUM = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?![0-9])"
_MINUS = r"(?:(?<![0-9A-Za-z])-)?"  # after a letter or digit a hyphen is a dash, not a sign
_PHONE = (
    r"(?:\+[0-9]{1,3}[ -]?)?(?:1[3-9][0-9]{9}|1[3-9][0-9] [0-9]{4} [0-9]{4}"
    r"|[0-9]{3}-[0-9]{3}-[0-9]{4}|0[0-9]{2,3}-[0-9]{7,8})(?![0-9])"
)

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_CURRENCY = {"$": "美元", "¥": "元", "€": "欧元", "£": "英镑"}
_ZH_UNITS = {
    "km/h": "公里每小时", "km": "公里", "kg": "千克", "cm": "厘米", "mm": "毫米", "mg": "毫克", "ml": "毫升",
    "m": "米", "g": "克", "kW": "千瓦", "h": "小时", "min": "分钟", "ms": "毫秒", "s": "秒",
    "TB": "太字节", "GB": "吉字节", "MB": "兆字节", "KB": "千字节",
    "°C": "摄氏度", "℃": "摄氏度", "°F": "华氏度", "℉": "华氏度", "°": "度",
}  # fmt: skip
_TEMPERATURES = {"°C", "℃", "°F", "℉", "°"}
_UNIT = "(" + "|".join(re.escape(u) for u in sorted(_ZH_UNITS, key=len, reverse=True)) + ")(?![A-Za-z])"
# Before these measure words a lone 2 is read 两 (两个人, not 二个人).
_MEASURE_WORDS = "个位只次件本张条种天周岁块人台辆年套份"

_EN_UNITS = {"m": ("meter", "meters"), "h": ("hour", "hours"), "g": ("gram", "grams")}  # hibari lacks these
_EN_MONEY = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}
_EN_TITLES = {"Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus"}  # hibari turns "Dr." into "Dr"


def normalize(text: str, lang: Lang | None = None) -> str:
    """Verbalise numbers, dates, times, percentages, currency, units, phone numbers, abbreviations.

    Each written form is read in the language of its nearest Han or Latin letter on the same line:
    next to Han characters it becomes Chinese characters (二零二四年三月五日, 百分之三点五, 一百二十元,
    十点三十分), next to Latin words it becomes English words. A line with no letters at all is read in
    `lang`; when None, in the dominant script of the whole text (zh on a tie with any Han, else en).
    Never raises; text it does not understand is left as it is.
    """
    text = _plain_digits(text.translate(_HALF_WIDTH))
    script = _Script.of(text, lang)

    def zh_or_keep(m: re.Match[str]) -> str:
        return _zh_form(m) if script.lang_at(m.start(), m.end(), m.group()) == "zh" else m.group()

    def english_or_keep(m: re.Match[str]) -> str:
        # A run with no letter or digit ("#" in "#话题#") is Chinese punctuation, not English.
        return _english(m.group()) if _ALNUM_RE.search(m.group()) else m.group()

    # Digits still left were judged English, and the Chinese readings now bound the non-Han runs.
    return _NON_HAN_RUN_RE.sub(english_or_keep, _ZH_FORM_RE.sub(zh_or_keep, text))


def _plain_digits(text: str) -> str:
    """Superscript, subscript, circled and other non-decimal digits become ASCII digits, except
    right after a letter, where they are powers ("x²": "x squared"). Elsewhere the English G2P
    cannot read them ("¹1", "{¹" made it fail)."""
    if text.isascii() or not any(c.isdigit() and not c.isdecimal() for c in text):
        return text
    chars = list(text)
    for i, c in enumerate(text):
        if c.isdigit() and not c.isdecimal() and not (i and text[i - 1].isalpha()):
            chars[i] = str(unicodedata.digit(c))
    return "".join(chars)


@dataclass(frozen=True)
class _Script:
    """Where the Han and Latin letters of a text are, to find a form's nearest one by bisection."""

    letters: list[int]
    han: list[bool]
    newlines: list[int]
    fallback: Lang

    @classmethod
    def of(cls, text: str, lang: Lang | None) -> _Script:
        found = [(m.start(), m.group(1) is not None) for m in _LETTER_RE.finditer(text)]
        han = sum(is_han for _, is_han in found)
        latin = len(found) - han
        dominant: Lang = "zh" if han > latin or (han and han == latin) else "en"
        newlines = [m.start() for m in re.finditer("\n", text)]
        return cls([p for p, _ in found], [h for _, h in found], newlines, lang or dominant)

    def lang_at(self, start: int, end: int, form: str) -> Lang:
        """Language of the form text[start:end]: that of the nearest letter on its line."""
        if _HAN_RE.search(form):
            return "zh"
        line = bisect_left(self.newlines, start)
        nearest: tuple[int, bool] | None = None  # (characters in between, is Han)
        i = bisect_left(self.letters, start) - 1
        if i >= 0 and bisect_left(self.newlines, self.letters[i]) == line:
            nearest = (start - 1 - self.letters[i], self.han[i])
        j = bisect_left(self.letters, end)
        on_line = j < len(self.letters) and bisect_left(self.newlines, self.letters[j]) == line
        # On a tie the word after wins: a number usually modifies what follows it (3 个, 3 apples).
        if on_line and (nearest is None or self.letters[j] - end <= nearest[0]):
            nearest = (self.letters[j] - end, self.han[j])
        if nearest is None:
            return self.fallback
        return "zh" if nearest[1] else "en"


# -- Chinese --------------------------------------------------------------------------------------


def _digits_zh(digits: str, one: str = "一") -> str:
    return "".join(one if c == "1" else _ZH_DIGITS[int(c)] for c in digits if c.isdigit())


def _number_zh(s: str) -> str:
    sign = "负" if s.startswith("-") else ""
    whole, _, frac = s.lstrip("-").replace(",", "").partition(".")
    # cn2an reads at most 16 digits and drops leading zeros; such strings are codes, read digit by digit.
    if len(whole) > 16 or (len(whole) > 1 and whole[0] == "0"):
        words = _digits_zh(whole)
    else:
        words = str(cn2an.an2cn(whole))
    return sign + words + ("点" + _digits_zh(frac) if frac else "")


def _trim_zeros(amount: str) -> str:
    return amount.rstrip("0").rstrip(".") if "." in amount else amount


def _phone_groups(phone: str) -> list[str]:
    groups = []
    for g in re.split("[ -]", phone):
        # An unbroken 11-digit mobile number is spoken in groups of 3-4-4.
        groups += [g[:3], g[3:7], g[7:]] if len(g) == 11 else [g]
    return groups


def _zh_year(m: re.Match[str]) -> str:
    return _digits_zh(m[1]) + "年"


def _zh_date(m: re.Match[str]) -> str:
    month, day = int(m[2]), int(m[3])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return _zh_numbers(m[0])
    return f"{_digits_zh(m[1])}年{_number_zh(str(month))}月{_number_zh(str(day))}日"


def _zh_phone(m: re.Match[str]) -> str:
    return " ".join(("加" if g[0] == "+" else "") + _digits_zh(g, one="幺") for g in _phone_groups(m[0]))


def _zh_time(m: re.Match[str]) -> str:
    hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
    if hour > 24 or minute > 59 or second > 59:
        return "比".join(_number_zh(part) for part in re.split("[:：]", m[0]))
    words = ("两" if hour == 2 else _number_zh(str(hour))) + "点"
    if minute or second:
        words += ("零" if minute < 10 else "") + (_number_zh(str(minute)) + "分" if minute else "分")
    return words + (_number_zh(str(second)) + "秒" if second else "")


def _zh_currency(m: re.Match[str]) -> str:
    return _number_zh(_trim_zeros(m[2])) + _ZH_CURRENCY[m[1]]


def _zh_range(m: re.Match[str]) -> str:
    low, high, unit = _number_zh(m[1]), _number_zh(m[2]), m[3]
    if unit in ("%", "‰"):
        per = "百分之" if unit == "%" else "千分之"
        return f"{per}{low}到{per}{high}"
    return f"{low}到{high}" + (_ZH_UNITS[unit] if unit else "")


def _zh_percent(m: re.Match[str]) -> str:
    return ("负" if m[1] else "") + ("百分之" if m[3] == "%" else "千分之") + _number_zh(m[2])


def _zh_measure(m: re.Match[str]) -> str:
    amount, unit = m[1], m[2]
    if unit in _TEMPERATURES and amount.startswith("-"):
        return "零下" + _number_zh(amount[1:]) + _ZH_UNITS[unit]
    return ("两" if amount == "2" and unit not in _TEMPERATURES else _number_zh(amount)) + _ZH_UNITS[unit]


def _zh_numbers(form: str) -> str:
    """Fallback: every number in `form` read on its own, so no digit survives in Chinese context."""
    return re.sub(_NUM, lambda m: _number_zh(m[0]), form)


_ZH_RULES: list[tuple[str, Callable[[re.Match[str]], str]]] = [
    (r"([0-9]{4})年", _zh_year),
    (r"([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})(?![0-9])", _zh_date),
    (_PHONE, _zh_phone),
    (r"([0-9]{1,2})[:：]([0-9]{2})(?:[:：]([0-9]{2}))?(?![0-9])", _zh_time),
    (r"([0-9]+)[:：]([0-9]+)", lambda m: f"{_number_zh(m[1])}比{_number_zh(m[2])}"),
    (rf"([$¥€£]) ?({_NUM})", _zh_currency),
    (rf"({_NUM}) ?[-~～–—] ?({_NUM})(?: ?([%‰]|{_UNIT}))?", _zh_range),
    (rf"({_MINUS})({_NUM}) ?([%‰])", _zh_percent),
    (rf"({_MINUS}{_NUM}) ?{_UNIT}", _zh_measure),
    (r"([0-9]+)/([0-9]+)", lambda m: f"{_number_zh(m[2])}分之{_number_zh(m[1])}"),
    (f"2([{_MEASURE_WORDS}])", lambda m: "两" + m[1]),
    (rf"{_MINUS}{_NUM}", lambda m: _number_zh(m[0])),
]
_ZH_PATTERNS = [re.compile(p) for p, _ in _ZH_RULES]
# One alternation, first rule first; the lookbehind starts forms only at the head of a digit run,
# which also keeps the scan linear on long runs of digits.
_ZH_FORM_RE = re.compile(
    "(?<![0-9])(?:" + "|".join(f"(?P<r{i}>{p})" for i, (p, _) in enumerate(_ZH_RULES)) + ")"
)


def _zh_form(m: re.Match[str]) -> str:
    assert m.lastgroup is not None  # every alternative is a named group
    i = int(m.lastgroup[1:])
    own = _ZH_PATTERNS[i].fullmatch(m.group())
    return _ZH_RULES[i][1](own) if own else _zh_numbers(m.group())


# -- English --------------------------------------------------------------------------------------


def _digits_en(digits: str) -> str:
    return " ".join(en_numbers.ONES[int(c)] for c in digits if c.isdigit())


def _number_en(s: str, years: bool = False) -> str:
    sign = "minus " if s.startswith("-") else ""
    whole, _, frac = s.lstrip("-").replace(",", "").partition(".")
    if len(whole) > 15 or (len(whole) > 1 and whole[0] == "0"):
        words = _digits_en(whole) + (" point " + _digits_en(frac) if frac else "")
    elif frac:
        words = en_numbers.decimal(f"{whole}.{frac}")
    elif years and len(whole) == 4 and whole[0] in "12" and not sign:
        words = en_numbers.year(int(whole))  # as hibari's lexicon reads a bare 2024
    else:
        words = en_numbers.cardinal(int(whole))
    return sign + words.replace(",", "")  # num2words' commas would become pauses


def _en_phone(m: re.Match[str]) -> str:
    return ", ".join(("plus " if g[0] == "+" else "") + _digits_en(g) for g in _phone_groups(m[0]))


def _en_iso_date(m: re.Match[str]) -> str:
    month, day = int(m[2]), int(m[3])
    return f"{m[1]}-{month:02d}-{day:02d}" if 1 <= month <= 12 and 1 <= day <= 31 else m[0]


def _count_en(n: int, one: str, many: str) -> str:
    return f"{_number_en(str(n))} {one if n == 1 else many}"


def _en_money(m: re.Match[str]) -> str:
    unit, cent = _EN_MONEY[m[1]]
    whole, _, frac = m[2].replace(",", "").partition(".")
    if len(frac.rstrip("0")) > 2 or len(whole) > 15:  # not a price: "3.14159 dollars"
        return f"{_number_en(m[2])} {unit}s"
    n, cents = int(whole), int(frac.ljust(2, "0")[:2])
    parts = [_count_en(n, unit, unit + "s")] if n or not cents else []
    if cents:
        parts.append(_count_en(cents, cent, "pence" if cent == "penny" else cent + "s"))
    return " and ".join(parts)


def _en_decade(m: re.Match[str]) -> str:
    words = _number_en(m[1], years=True)
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


_Rewrite = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]
_EN_BEFORE: list[_Rewrite] = [
    # No real number is this long, and hibari's number patterns rescan such a chain from every comma.
    (
        re.compile(r"(?<![0-9,.])[0-9][0-9,.]{24,}"),
        lambda m: re.sub("[0-9]+", lambda d: f" {_digits_en(d[0])} ", m[0]),
    ),
    (re.compile(f"(?<![0-9]){_PHONE}"), _en_phone),
    (re.compile("℃"), "°C"),
    (re.compile("℉"), "°F"),
    # hibari reads ISO dates only as yyyy-mm-dd.
    (re.compile(r"(?<![0-9])([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})(?![0-9])"), _en_iso_date),
    (
        re.compile(rf"(?<![\w.,$£€¥])(-?{_NUM}) ?([mhg])(?!\w)"),
        lambda m: f"{m[1]} {_EN_UNITS[m[2]][0 if m[1] in ('1', '-1') else 1]}",
    ),
]
_EN_AFTER: list[_Rewrite] = [
    (re.compile(r"\b(Dr|Mr|Mrs)\b"), lambda m: _EN_TITLES[m[1]]),
    (re.compile(rf"(?<![\w$£€])([$£€]) ?({_NUM})"), _en_money),
    (
        re.compile(rf"(?<![0-9.,])({_NUM}) ?[-–~] ?({_NUM}) ?%"),
        lambda m: f"{_number_en(m[1])} to {_number_en(m[2])} percent",
    ),
    (re.compile(rf"(?<![0-9.,])({_MINUS}{_NUM}) ?%"), lambda m: _number_en(m[1]) + " percent"),
    (
        re.compile(r"(?<![0-9.,])([0-9]{1,15})(?:st|nd|rd|th)\b"),
        lambda m: en_numbers.ordinal(int(m[1])).replace(",", ""),
    ),
    (re.compile(r"(?<![0-9.,])([0-9]{2}|[1-9][0-9]{3})s\b"), _en_decade),
    (re.compile(rf"(?<![0-9.,])({_NUM}):({_NUM})"), lambda m: f"{_number_en(m[1])} to {_number_en(m[2])}"),
    (re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])"), " "),
    (re.compile(rf"(?<![0-9.,]){_MINUS}{_NUM}"), lambda m: _number_en(m[0], years=True)),
    (re.compile("[0-9]+"), lambda m: _digits_en(m[0])),  # digits after a stray "." or ","
    (re.compile("  +"), " "),
]


def _english(run: str) -> str:
    """English reading of a run of non-Han text, keeping the whitespace that bounds it."""
    core = run.strip()
    if not core:
        return run
    head, tail = run[: len(run) - len(run.lstrip())], run[len(run.rstrip()) :]
    for pattern, repl in _EN_BEFORE:
        core = pattern.sub(repl, core)
    core = hibari_normalize(core)
    for pattern, repl in _EN_AFTER:
        core = pattern.sub(repl, core)
    return head + core.strip() + tail
