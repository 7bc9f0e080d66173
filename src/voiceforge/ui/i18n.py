"""Every label and message of the web UI in Chinese and English, and the switch between them.

Components register the key of their label once (:meth:`Texts.label`); switching the language
returns one ``gr.update`` per registered component. Messages that come from the service (an
:class:`~voiceforge.errors.InvalidInput`, for instance) are written in English; the UI puts a
translated lead-in in front of them, and says the errors people meet most (the prompt checks,
an instruction the engine cannot follow, limits, quotas, a busy or unavailable service) wholly in
Chinese, from the numbers the error carries (:func:`explain`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import gradio as gr

from voiceforge.errors import VoiceforgeError

Lang = Literal["zh", "en"]
C = TypeVar("C", bound="gr.components.Component | gr.Tab")  # a component keeps its type through Texts
LANGS: dict[str, Lang] = {"中文": "zh", "English": "en"}

MODES = ("preset", "zero_shot", "cross_lingual", "instruct")

STRINGS: dict[str, tuple[str, str]] = {  # key: (zh, en)
    "title": ("# voiceforge 语音克隆", "# voiceforge voice cloning"),
    "tab.generate": ("语音合成", "Generate"),
    "tab.library": ("音色库", "Voice library"),
    "tab.history": ("历史记录", "History"),
    "tab.backend": ("后台查看", "Backend"),
    "mode": ("推理模式", "Mode"),
    "mode.preset": ("预训练音色", "Preset voice"),
    "mode.zero_shot": ("3s极速复刻", "3 s clone"),
    "mode.cross_lingual": ("跨语种复刻", "Cross-lingual clone"),
    "mode.instruct": ("自然语言控制", "Natural-language control"),
    "help.preset": (
        "选择一个预训练音色，输入文本即可合成。",
        "Pick a stock voice and type the text to speak.",
    ),
    "help.zero_shot": (
        "上传或录制 3–15 秒的说话录音（≥16 kHz），文本会自动识别，可修改；用该音色朗读合成文本。",
        "Upload or record 3–15 s of someone speaking (≥ 16 kHz); its transcript is filled in and can be "
        "edited; the text is spoken in that voice.",
    ),
    "help.cross_lingual": (
        "提供一种语言的录音（3–15 秒），用另一种语言合成，例如中文录音说英文。",
        "Give a 3–15 s recording in one language and speak text in another, e.g. a Chinese prompt "
        "speaking English.",
    ),
    "help.instruct": (
        "选择音色（或上传录音），再用一句话描述说话方式：方言、情感、语速、音量。",
        "Pick a voice (or give a recording) and describe the delivery in words: dialect, emotion, "
        "speed, volume.",
    ),
    "text": ("合成文本", "Text to speak"),
    "text.placeholder": ("输入要合成的文字（1–200 字）", "Type the text to speak (1–200 characters)"),
    "voice": ("音色（预训练或已保存）", "Voice (stock or saved)"),
    "prompt": ("提示音频（上传或录音）", "Prompt audio (upload or record)"),
    "prompt_text": ("提示音频文本（自动识别，可修改）", "Prompt transcript (recognised, editable)"),
    "instruct": ("控制指令", "Instruction"),
    "instruct.placeholder": ("例如：用开心的语气说", "e.g. speak happily, slower"),
    "instruct.presets": ("常用指令", "Presets"),
    "seed": ("随机种子", "Seed"),
    "dice": ("🎲", "🎲"),
    "speed": ("语速", "Speed"),
    "format": ("输出格式", "Format"),
    "stream": ("流式播放", "Stream"),
    "generate": ("生成音频", "Generate"),
    "result": ("合成结果", "Result"),
    "compare": ("提示音频（对比）", "Prompt (compare)"),
    "save.name": ("保存为音色：名称", "Save as voice: name"),
    "save": ("保存到音色库", "Save to library"),
    "save.consent": ("说话人已同意克隆其声音", "The speaker agreed to have their voice cloned"),
    "lib.list": ("已保存的音色", "Saved voices"),
    "lib.pick": ("选择音色", "Voice"),
    "lib.preview": ("原始录音", "Recording"),
    "lib.new_name": ("新名称", "New name"),
    "lib.rename": ("重命名", "Rename"),
    "lib.delete": ("删除", "Delete"),
    "lib.refresh": ("刷新", "Refresh"),
    "history.clear": ("清空历史", "Clear history"),
    "restart": ("重启应用", "Restart engine"),
    "restart.help": (
        "排空并重启推理进程（页面不中断，排队任务保留）。",
        "Drains and restarts the engine workers (the page stays up; queued jobs are kept).",
    ),
    # messages
    "msg.checking": ("正在检查提示音频并识别文本…", "Checking the prompt and recognising its words…"),
    "msg.prompt_ok": (
        "✅ 提示音频可用：{rate} Hz，{speech:.1f} 秒语音。",
        "✅ Prompt is fine: {rate} Hz, {speech:.1f} s of speech.",
    ),
    "msg.prompt_bad": ("⚠️ 提示音频不可用：", "⚠️ The prompt cannot be used: "),
    "voice.default": ("默认（按文本语言：{voices}）", "Default (by the text's language: {voices})"),
    "msg.doubtful": (
        "请听一遍并核对识别文本：Whisper 对这些词没有把握：{words}",
        "Listen and check the transcript: Whisper was unsure of {words}",
    ),
    "msg.error": ("⚠️ 出错了：", "⚠️ Something went wrong: "),
    "msg.internal": (
        "⚠️ 服务器内部错误（任务 {task}），详情见后台日志。",
        "⚠️ Internal server error (task {task}); the backend log has the details.",
    ),
    "msg.need_prompt": (
        "⚠️ 该模式需要提示音频：请上传/录制，或选择已保存的音色。",
        "⚠️ This mode clones a voice: upload or record a prompt, or pick a saved voice.",
    ),
    "msg.need_instruct": ("⚠️ 请输入控制指令或点选常用指令。", "⚠️ Type an instruction or click a preset."),
    "msg.need_text": ("⚠️ 请输入要合成的文本。", "⚠️ Type the text to speak."),
    "msg.need_name": ("⚠️ 请输入音色名称。", "⚠️ Type a name for the voice."),
    "msg.need_consent": (
        "⚠️ 保存音色前需要说话人的同意：确认后请勾选同意框。",
        "⚠️ Saving a voice needs the speaker's consent: tick the consent box once they agreed.",
    ),
    "msg.need_voice": ("⚠️ 请先选择一个已保存的音色。", "⚠️ Pick a saved voice first."),
    "msg.queued": ("排队中…", "Waiting in the queue…"),
    "msg.stage": ("合成中 {done}/{total} 句", "Synthesising sentence {done}/{total}"),
    "msg.enrolling": ("正在复刻音色…", "Cloning the voice…"),
    "msg.done": (
        "✅ 完成：{duration:.2f} 秒音频（任务 {task}{cached}）",
        "✅ Done: {duration:.2f} s of audio (task {task}{cached})",
    ),
    "msg.cached": ("，来自缓存", ", from the cache"),
    "msg.saved": ("✅ 已保存音色「{name}」（{id}）", "✅ Saved voice '{name}' ({id})"),
    "msg.renamed": ("✅ 已重命名为「{name}」", "✅ Renamed to '{name}'"),
    "msg.deleted": ("✅ 已删除「{name}」", "✅ Deleted '{name}'"),
    "msg.restart": ("重启：{stage}", "Restart: {stage}"),
    "msg.restarted": (
        "✅ 重启完成，用时 {seconds:.1f} 秒；引擎第 {generation} 代。{detail}",
        "✅ Restarted in {seconds:.1f} s; engine generation {generation}. {detail}",
    ),
    "msg.restart_failed": ("⚠️ 重启失败：", "⚠️ Restart failed: "),
    "msg.admin_only": ("⚠️ 需要管理员密钥（admin 权限）。", "⚠️ This needs an admin key (the admin scope)."),
    "history.empty": ("还没有生成记录。", "Nothing generated in this browser yet."),
    "cols": ("名称,ID,语言,文本,声音,创建时间", "Name,ID,Language,Transcript,Voice,Created"),
    # a saved voice's learning state (service/learning.py), in the library table
    "learn.enrolled": ("快速克隆", "enrolled"),
    "learn.queued": ("等待学习", "queued to learn"),
    "learn.learning": ("学习中 {progress:.0%}", "learning {progress:.0%}"),
    "learn.learned": ("已学习", "learned"),
    "learn.failed": ("学习失败", "learning failed"),
    # the backend log panel (rendered as HTML; the script keeps its lines across re-renders)
    "log.level": ("级别", "Level"),
    "log.task": ("任务 ID 过滤", "Filter by task id"),
    "log.pause": ("暂停滚动", "Pause scrolling"),
    "log.clear": ("清屏", "Clear"),
    "log.connecting": ("连接中…", "connecting…"),
    "log.live": ("● 实时", "● live"),
    "log.reconnecting": ("重新连接中…", "reconnecting…"),
    # the engine picker (shown when VOICEFORGE_ENGINES offers more than one) and what an engine lacks
    "engine": ("引擎", "Engine"),
    "lacks.modes": ("引擎 {engine} 不支持：{modes}", "engine {engine} cannot do: {modes}"),
    "lacks.emotion": ("引擎 {engine} 不支持情感指令", "engine {engine} cannot follow emotion instructions"),
    "lacks.speed": ("引擎 {engine} 不支持语速指令", "engine {engine} cannot follow speed instructions"),
    "lacks.volume": ("引擎 {engine} 不支持音量指令", "engine {engine} cannot follow volume instructions"),
    "lacks.dialect": ("引擎 {engine} 不支持方言", "engine {engine} cannot speak dialects"),
    "lacks.dialects": ("引擎 {engine} 不支持{dialects}", "engine {engine} cannot speak {dialects}"),
    "lacks.streaming": ("引擎 {engine} 不支持流式播放", "engine {engine} cannot stream"),
    "lacks.speed_when_streaming": (
        "引擎 {engine} 流式播放时不能调语速",
        "engine {engine} cannot change the speed while streaming",
    ),
    "lacks.seed": (
        "引擎 {engine} 不使用随机种子",
        "engine {engine} takes no seed",
    ),
}

# Instruction presets: (zh label, en label, the instruction sent, the engine control it needs).
# A dialect preset needs that dialect in the engine's `Capabilities.dialects` (named as there).
PRESETS: tuple[tuple[str, str, str, str], ...] = (
    ("开心", "Happy", "用开心的语气说", "emotion"),
    ("悲伤", "Sad", "用悲伤的语气说", "emotion"),
    ("生气", "Angry", "用生气的语气说", "emotion"),
    ("温柔", "Gentle", "用温柔的语气说", "emotion"),
    ("慢一点", "Slower", "请慢一点说", "speed"),
    ("快一点", "Faster", "请快一点说", "speed"),
    ("大声", "Louder", "请大声一点说", "volume"),
    ("小声", "Softer", "请小声一点说", "volume"),
    ("四川话", "Sichuan", "用四川话说", "dialect:四川话"),
    ("粤语", "Cantonese", "用粤语说", "dialect:粤语"),
)


def t(key: str, lang: str, **values: Any) -> str:
    """The text for ``key`` in ``lang`` ("zh" or "en"), with ``values`` filled in."""
    zh, en = STRINGS[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


# Service errors said in Chinese: (error code, detail keys it needs, text); the first that fits
# wins. The text is filled from the detail, the error's ``retry_after`` and the Chinese names
# below; an error that fits none keeps the service's (English) words after a Chinese lead-in.
_ZH: tuple[tuple[str, frozenset[str], str], ...] = (
    ("invalid_input", frozenset({"sample_rate", "min_sample_rate"}),
     "提示音频采样率为 {sample_rate} Hz，至少需要 {min_sample_rate} Hz；请用 16 kHz 以上重新录制。"),
    ("invalid_input", frozenset({"max_duration_s"}),
     "提示音频太长（最多接受 {max_duration_s:g} 秒）；请上传 3–15 秒、只有一位说话人的录音。"),
    ("invalid_input", frozenset({"speech_s", "min_speech_s"}),
     "提示音频中只有 {speech_s:.1f} 秒语音，至少需要 {min_speech_s:g} 秒（3–15 秒最好）；请录长一点。"),
    ("invalid_input", frozenset({"clipped_fraction"}),
     "提示音频削波严重（{clipped_fraction:.1%} 的采样达到满幅）；请调低录音音量或离麦克风远一点后重录。"),
    ("invalid_input", frozenset({"duration_s", "speech_s"}),
     "提示音频中没有找到人声；请靠近麦克风，录一段有人说话的音频。"),
    ("invalid_input", frozenset({"param", "category"}),
     "{param_zh}含有本服务敏感词表中的词（类别 {category}）；请换个说法，或请管理员检查词表。"),
    ("unsupported", frozenset({"engine", "unsupported"}),
     "引擎 {engine} 做不到指令里的{unsupported_zh}；请换一个支持的引擎，或去掉这部分指令。"),
    ("rate_limited", frozenset({"quota_chars", "used_chars"}),
     "今天的 {quota_chars} 字配额已用完（已用 {used_chars} 字）；配额在 UTC 0 点（北京时间 8 点）恢复。"),
    ("rate_limited", frozenset(), "请求太频繁；请 {retry_after} 秒后再试。"),
    ("forbidden", frozenset({"scope"}), "这个操作需要 {scope} 权限，当前登录的密钥没有；请换一个密钥登录。"),
    ("overloaded", frozenset(), "服务正忙；请 {retry_after} 秒后再试，输入的内容都还在。"),
    ("engine_unavailable", frozenset(), "引擎暂时不可用；请 {retry_after} 秒后再试。"),
    ("storage_unavailable", frozenset(), "存储暂时不可用；请 {retry_after} 秒后再试。"),
    ("timeout", frozenset(), "处理超时；请缩短文本，或稍后再试。"),
)  # fmt: skip
_FEATURES_ZH = {"dialect": "方言", "emotion": "情感", "speed": "语速", "volume": "音量", "pitch": "音调"}
_PARAMS_ZH = {"text": "文本", "prompt_text": "提示音频的文字", "instruct": "指令", "name": "名称"}


def explain(error: VoiceforgeError, lang: str, lead: str = "msg.error") -> str:
    """A service error for a person in ``lang``: in Chinese where :data:`_ZH` has the error's kind
    (with the numbers it carries), otherwise the translated lead-in and the service's words."""
    if lang == "zh":
        detail = error.detail if isinstance(error.detail, dict) else {}
        values = {
            **detail,
            "retry_after": getattr(error, "retry_after", 1),
            "param_zh": _PARAMS_ZH.get(str(detail.get("param")), detail.get("param")),
            "unsupported_zh": "、".join(_FEATURES_ZH.get(n, n) for n in detail.get("unsupported") or ()),
        }
        for code, keys, text in _ZH:
            if code == error.code and keys <= detail.keys():
                try:
                    return t(lead, lang) + text.format(**values)
                except (KeyError, ValueError, TypeError):  # a value of another shape: say it in English
                    break
    return t(lead, lang) + error.message


def mode_choices(lang: str, offered: Collection[str] = MODES) -> list[tuple[str, str]]:
    """The mode radio's choices: the ``offered`` modes (the engine's), in the order of MODES."""
    return [(t(f"mode.{m}", lang), m) for m in MODES if m in offered]


@dataclass
class Texts:
    """The components whose text follows the language switch, and how each is updated."""

    components: list[gr.components.Component | gr.Tab] = field(default_factory=list)
    _updates: list[Callable[[str], dict[str, Any]]] = field(default_factory=list)

    def add(self, component: C, update: Callable[[str], dict[str, Any]]) -> C:
        self.components.append(component)
        self._updates.append(update)
        return component

    def label(self, component: C, key: str, placeholder: str | None = None) -> C:
        def update(lang: str) -> dict[str, Any]:
            if placeholder:
                return gr.update(label=t(key, lang), placeholder=t(placeholder, lang))
            return gr.update(label=t(key, lang))

        return self.add(component, update)

    def value(self, component: C, key: str) -> C:
        """Buttons and Markdown: the text is the value."""
        return self.add(component, lambda lang: gr.update(value=t(key, lang)))

    def updates(self, lang: str) -> list[dict[str, Any]]:
        return [update(lang) for update in self._updates]
