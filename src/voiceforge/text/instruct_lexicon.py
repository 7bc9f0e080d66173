"""The words of voice instructions: each Chinese word or English pattern and the token it reads
as (a direction, a topic, an emotion, a degree, a negation, a dialect or an unsupported request),
compiled into one lexer. :mod:`voiceforge.text.instruct` reads the tokens of a clause into controls.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Tok(NamedTuple):
    kind: str  # dir, adir (needs a topic), topic, emo, deg, neg, dialect, unsup, skip
    arg: str = ""  # control, emotion, dialect or request; adir: control when no topic is named
    sign: int = 0
    level: float = 1.0  # deg: degree multiplier
    attach: str = "pre"  # deg: pre (next word), post (previous word), either (next, else previous)


# (display name, English, more Chinese names, English pattern); "X话" also matches "X方言" / "X dialect"
DIALECTS = [
    ("四川话", "Sichuanese", "川话", "sichuan(?:ese)?(?: dialect)?"),
    ("粤语", "Cantonese", "广东话", "cantonese"),
    ("东北话", "Northeastern Mandarin", "", "northeast(?:ern)? (?:mandarin|dialect)"),
    ("上海话", "Shanghainese", "沪语", "shanghai(?:nese)?(?: dialect)?"), ("天津话", "Tianjin", "", ""),
    ("闽南话", "Hokkien", "闽南语 台语 台湾话", "hokkien|minnan|southern min|taiwanese"),
    ("河南话", "Henan", "", ""), ("山东话", "Shandong", "", ""), ("陕西话", "Shaanxi", "", ""),
    ("山西话", "Shanxi", "", ""), ("湖南话", "Hunan", "长沙话", ""), ("湖北话", "Hubei", "武汉话", ""),
    ("重庆话", "Chongqing", "", ""), ("贵州话", "Guizhou", "", ""), ("云南话", "Yunnan", "", ""),
    ("甘肃话", "Gansu", "", ""), ("宁夏话", "Ningxia", "", ""), ("南京话", "Nanjing", "", ""),
    ("杭州话", "Hangzhou", "", ""), ("苏州话", "Suzhou", "", ""), ("温州话", "Wenzhou", "", ""),
    ("北京话", "Beijing", "京片子", ""), ("客家话", "Hakka", "", "hakka"),
    ("潮汕话", "Teochew", "", "teochew"),
    ("吴语", "Wu", "", "wu chinese|wu dialect"), ("方言", "unspecified", "", "dialect"),
]  # fmt: skip
DIALECT_EN = {name: en for name, en, _, _ in DIALECTS}


LEXICON: list[tuple[Tok, str, str]] = [  # token, Chinese words, English regex (tried in this order)
    (Tok("dir", "speed", 1), "快 快速 加快 加速 飞快 迅速 急促 赶快",
     r"fast(?:er)?|quick(?:ly|er)?|rapid(?:ly)?|hurried(?:ly)?|brisk(?:ly)?|speed up"),
    (Tok("dir", "speed", -1), "慢 慢慢 放慢 缓慢 减速 慢速 缓缓 慢吞吞",
     r"slow(?:ly|er)?(?: down)?|leisurely|unhurried"),
    (Tok("dir", "volume", 1), "大声 响亮 洪亮 高声 大点声 放声 喊 大喊 呐喊 吼",
     r"loud(?:ly|er)?|shout(?:ing)?|yell(?:ing)?|speak up|raise (?:your |the )?voice"),
    (Tok("dir", "volume", -1), "小声 轻声 低声 小点声 细声", r"quiet(?:ly|er)?|lower (?:your |the )?voice"),
    (Tok("dir", "pitch", 1), "高音 尖 尖细 高亢 尖锐", r"high(?:er)?[- ]pitched"),
    (Tok("dir", "pitch", -1), "低沉 低音 浑厚 深沉", r"deep(?:er)?|low(?:er)?[- ]pitched"),
    (Tok("dir", "range", 1), "抑扬顿挫 有起伏 富有感情 有感情 声情并茂 生动 感情丰富 夸张",
     r"lively|expressive(?:ly)?|animated(?:ly)?|dynamic(?:ally)?"),
    (Tok("dir", "range", -1), "平淡 单调 平稳 毫无感情 没有感情 没感情 面无表情 机械 呆板 平铺直叙",
     r"flat(?:ly|ter)?|monoton(?:e|ous|ously)|deadpan|robotic(?:ally)?"),
    (Tok("unsup", "whisper"), "耳语 悄悄话 悄悄 低语 气声 气音 窃窃私语", r"whisper(?:ing|ed|s|y)?"),
    (Tok("unsup", "singing"), "唱 唱歌 哼唱 说唱", r"sing(?:ing|s)?|sung|rap(?:ping)?|chant(?:ing)?"),
    (Tok("unsup", "role-play"), "扮演 模仿 假装 角色 童声 小孩 老人 机器人",
     r"role-?play(?:ing)?|pretend(?:ing)?|imitat(?:e|ing)|impersonat(?:e|ing)|act(?:ing)? as|in the voice of"
     r"|robot|child|kid|old (?:man|woman)"),
    (Tok("unsup", "accent"), "口音", r"accent(?:ed)?"),
    *((Tok("dialect", name), f"{name} {name[:-1] + '方言' if name.endswith('话') else ''} {zh}",
       pat or (f"{en.lower()}(?:ese)? dialect" if name.endswith("话") else ""))
      for name, en, zh, pat in DIALECTS),
    (Tok("emo", "happy"), "开心 高兴 快乐 愉快 欢快 喜悦 欢乐 愉悦 欢喜 积极 乐观 笑着 微笑 活泼 俏皮 轻快",
     r"happ(?:y|ily|ier)|cheerful(?:ly)?|joyful(?:ly)?|glad(?:ly)?|upbeat|delighted|friendly|smiling|laughing"),
    (Tok("emo", "sad"), "伤心 悲伤 难过 悲痛 忧伤 沮丧 哀伤 悲哀 失落 伤感 哭腔 哭着 委屈 忧郁"
     " 不开心 不高兴 痛苦",
     r"sad(?:ly|der|ness)?|sorrowful(?:ly)?|unhapp(?:y|ily)|depressed|melancholy|gloom(?:y|ily)|mournful(?:ly)?"
     r"|tearful(?:ly)?|crying|heartbroken"),
    (Tok("emo", "angry"), "愤怒 生气 恼火 气愤 暴躁 发火 恼怒 怒气冲冲 愤慨 怒",
     r"angr(?:y|ily|ier)|furious(?:ly)?|mad|irritated|annoyed|enraged"),
    (Tok("emo", "soft"), "温柔 柔和 轻柔 温和 柔声 轻轻 甜美 亲切 温暖 轻声细语",
     r"soft(?:ly|er)?|gentl(?:e|y|er)|tender(?:ly)?|warm(?:ly)?|sweet(?:ly)?"),
    (Tok("emo", "excited"), "激动 兴奋 兴高采烈 热情 激昂 慷慨激昂 亢奋 热烈",
     r"excited(?:ly)?|enthusiastic(?:ally)?|thrilled|energetic(?:ally)?"),
    (Tok("emo", "calm"), "平静 冷静 淡定 从容 沉着 平和 舒缓 安静 镇定 放松 悠闲",
     r"calm(?:ly|er)?(?: down)?|relaxed|peaceful(?:ly)?|soothing(?:ly)?|composed|seren(?:e|ely)"),
    (Tok("emo", "serious"), "严肃 认真 郑重 庄重 正式 严厉 一本正经 庄严",
     r"serious(?:ly)?|solemn(?:ly)?|stern(?:ly)?|formal(?:ly)?|grave(?:ly)?"),
    (Tok("emo", "surprised"), "惊讶 吃惊 惊奇 诧异 震惊 惊喜 意外",
     r"surprised(?:ly)?|astonished|amazed|shocked"),
    (Tok("emo", "fearful"), "害怕 恐惧 惊恐 紧张 胆怯 担心 恐慌 颤抖 畏惧",
     r"fearful(?:ly)?|scared|afraid|frightened|terrified|nervous(?:ly)?|anxious(?:ly)?|timid(?:ly)?"),
    (Tok("emo", "neutral"), "中性 中立", r"neutral(?:ly)?"),
    (Tok("deg", level=0.5, attach="pre"), "稍微 稍稍 稍 略微 略 有点儿 有点 有一点 有些 微微 轻微", ""),
    (Tok("deg", level=0.5, attach="post"), "一点儿 一点 一些 点儿 点 些 一丢丢", ""),
    (Tok("deg", level=0.5, attach="either"), "",
     r"slightly|somewhat|a (?:little )?bit|a little|a tad|a touch|kind of|sort of|marginally"),
    (Tok("deg", level=1.6, attach="pre"), "很 非常 特别 十分 相当 挺 太 格外 分外", ""),
    (Tok("deg", level=1.6, attach="post"), "很多 许多 多了 得多 不少", ""),
    (Tok("deg", level=1.6, attach="either"), "",
     r"very|much|really|quite|a lot|lots|so|way|far|too|extra|considerably|significantly"),
    (Tok("deg", level=3.0, attach="pre"), "极其 极度 极为 极 最 尽可能 尽量 超级 超 无比", ""),
    (Tok("deg", level=3.0, attach="post"), "极了 至极 到极致", ""),
    (Tok("deg", level=3.0, attach="either"), "",
     r"extremely|super|incredibly|as possible|as you can|maximally"),
    (Tok("neg"), "不要 别 不 勿 不用 不必 不能 不太 没有 无需 避免 不需要 不可 切勿 莫",
     r"not|never|no|without|avoid|less|[a-z]+n['’]t"),
    (Tok("topic", "range"), "起伏 抑扬", r"pitch range|intonation|range"),
    (Tok("topic", "speed"), "语速 速度 节奏 速", r"speed|pace|rate|tempo"),
    (Tok("topic", "volume"), "音量 声量 嗓门", r"volume|loudness"),
    (Tok("topic", "pitch"), "音调 声调 音高 调子 语调 调门", r"pitch|tone"),
    (Tok("topic", "voice"), "声音 嗓音 声线", r"voice"),
    (Tok("adir", "pitch", 1), "高", r"high(?:er)?"),
    (Tok("adir", "pitch", -1), "低", r"low(?:er)?"),
    (Tok("adir", "volume", 1), "大 响", ""),
    (Tok("adir", "volume", -1), "小 轻", ""),
    (Tok("adir", "range", 1), "", r"wider|broader"),
    (Tok("adir", "range", -1), "", r"narrower"),
    (Tok("adir", "", 1), "升高 提高 调高 加大 增大 增加 提升 拉高 升", r"up|raise|increase|boost"),
    (Tok("adir", "", -1), "降低 调低 减小 减少 放低 压低 降 减", r"down|reduce|decrease|drop"),
    (Tok("skip"), "最后 最好 一下 好好 大家 小心 高度 一般 大概 大约 一句话", ""),
]  # fmt: skip
CONTENT = frozenset({"dir", "adir", "emo", "dialect", "unsup"})


def _build_lexer() -> tuple[re.Pattern[str], dict[str, Tok], list[Tok]]:
    zh: dict[str, Tok] = {}
    en: list[Tok] = []
    parts: list[str] = []
    for tok, words, pattern in LEXICON:
        for word in words.split():
            assert word not in zh, f"{word} appears twice in the instruction lexicon"
            zh[word] = tok
        if pattern:
            parts.append(f"(?P<e{len(en)}>(?<![a-z])(?:{pattern})(?![a-z]))")
            en.append(tok)
    words_rx = "|".join(re.escape(w) for w in sorted(zh, key=len, reverse=True))
    return re.compile("|".join([f"(?P<zh>{words_rx})", *parts]), re.IGNORECASE), zh, en


LEX_RX, ZH_WORDS, EN_TOKS = _build_lexer()
