"""The generate tab: the four modes, the voice picker, the prompt recording (upload or microphone)
with its transcript, instructions and their presets, seed, speed, format, streaming, and Generate.

Generate passes POST /tts's admission (scope, rate limit, text filter and quota, audit row) and
runs :mod:`voiceforge.ui.actions` on the engine worker pool (:mod:`voiceforge.ui.render`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from voiceforge.engines.base import VoiceInfo
from voiceforge.errors import VoiceforgeError
from voiceforge.server import admission
from voiceforge.server.auth import Principal
from voiceforge.server.state import Services
from voiceforge.service.speech import Output, new_task_id
from voiceforge.ui import actions, render
from voiceforge.ui.common import Inputs, Page, ServicesFn, client_ip, error_message, lang_code
from voiceforge.ui.history import HistoryTab, history_html, remember
from voiceforge.ui.i18n import PRESETS, Texts, mode_choices, t
from voiceforge.voices.library import VoiceRecord

log = logging.getLogger(__name__)

FORMATS = ["wav", "mp3", "flac", "opus", "aac"]
SEED_MAX = 100_000_000


@dataclass(frozen=True)
class GenerateTab:
    engine: gr.Radio  # hidden unless the deployment offers more than one engine
    engine_status: gr.Markdown  # why the picked engine cannot be used here
    mode: gr.Radio
    help: gr.Markdown  # what the chosen mode does
    text: gr.Textbox
    voice: gr.Dropdown  # choices from voice_choices
    prompt_box: gr.Group  # shown in the cloning modes
    prompt: gr.Audio
    prompt_status: gr.Markdown
    prompt_text: gr.Textbox
    save_name: gr.Textbox
    save: gr.Button
    consent: gr.Checkbox
    instruct_box: gr.Group  # shown in instruct mode
    instruct: gr.Textbox
    presets: tuple[gr.Button, ...]  # one per i18n.PRESETS entry, in its order
    preset_note: gr.Markdown  # why some presets are disabled
    seed: gr.Number
    dice: gr.Button
    speed: gr.Slider
    format: gr.Dropdown
    stream: gr.Checkbox
    generate: gr.Button
    status: gr.Markdown
    live: gr.HTML  # the streamed sentences (static/ui.js plays them)
    result: gr.Audio
    compare: gr.Audio  # the prompt, beside the result


@dataclass(frozen=True)
class GenerateForm:
    """What Generate reads: the value of each component of the same name, as Gradio hands it over."""

    lang: str
    engine: str | None
    mode: str
    text: str | None
    voice: str | None
    prompt: str | None  # the recording's file path
    prompt_text: str | None
    instruct: str | None
    seed: float | None
    speed: float
    format: str
    stream: bool
    history: list[dict[str, Any]] | None

    def request(self) -> actions.Form:
        """The press, trimmed and read for its mode: a prompt only where the mode clones, an
        instruction only in instruct mode."""
        return actions.Form(
            text=(self.text or "").strip(),
            mode=self.mode,
            voice=self.voice or None,
            prompt=Path(self.prompt) if self.prompt and self.mode != "preset" else None,
            prompt_text=(self.prompt_text or "").strip() or None,  # cross-lingual too: it helps enrollment
            instruct=(self.instruct or "").strip() or None if self.mode == "instruct" else None,
            seed=int(self.seed or 1),
            speed=float(self.speed),
            format=self.format,
            engine=self.engine or None,
        )


def build(texts: Texts) -> GenerateTab:
    with texts.label(gr.Tab(t("tab.generate", "zh"), id="generate"), "tab.generate"), gr.Row():
        with gr.Column(scale=3, min_width=320):
            engine = texts.label(
                gr.Radio([], label=t("engine", "zh"), visible=False, elem_id="vf-engine"), "engine"
            )
            engine_status = gr.Markdown(visible=False, elem_id="vf-engine-status")
            mode = texts.label(
                gr.Radio(mode_choices("zh"), value="preset", label=t("mode", "zh"), elem_id="vf-mode"), "mode"
            )
            help_ = gr.Markdown(t("help.preset", "zh"), elem_id="vf-mode-help")
            text = texts.label(
                gr.Textbox(
                    label=t("text", "zh"),
                    placeholder=t("text.placeholder", "zh"),
                    lines=3,
                    max_length=200,
                    elem_id="vf-text",
                ),
                "text",
                "text.placeholder",
            )
            voice = texts.label(gr.Dropdown([], label=t("voice", "zh"), elem_id="vf-voice"), "voice")
            with gr.Group(visible=False) as prompt_box:
                prompt = texts.label(
                    gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label=t("prompt", "zh"),
                        elem_id="vf-prompt",
                    ),
                    "prompt",
                )
                prompt_status = gr.Markdown(elem_id="vf-prompt-status", padding=True)
                prompt_text = texts.label(
                    gr.Textbox(label=t("prompt_text", "zh"), lines=2, elem_id="vf-prompt-text"), "prompt_text"
                )
                with gr.Row(equal_height=True):
                    save_name = texts.label(
                        gr.Textbox(label=t("save.name", "zh"), scale=3, elem_id="vf-save-name"), "save.name"
                    )
                    save = texts.value(gr.Button(t("save", "zh"), scale=1, size="sm"), "save")
                consent = texts.label(
                    gr.Checkbox(False, label=t("save.consent", "zh"), elem_id="vf-consent"), "save.consent"
                )
            with gr.Group(visible=False) as instruct_box:
                instruct = texts.label(
                    gr.Textbox(
                        label=t("instruct", "zh"),
                        placeholder=t("instruct.placeholder", "zh"),
                        elem_id="vf-instruct",
                    ),
                    "instruct",
                    "instruct.placeholder",
                )
                with gr.Row():
                    presets = tuple(
                        texts.add(gr.Button(zh, size="sm", min_width=60), functools.partial(_label, zh, en))
                        for zh, en, _instruction, _control in PRESETS
                    )
                preset_note = gr.Markdown(visible=False, elem_id="vf-preset-note")
            with gr.Row(equal_height=True):
                seed = texts.label(
                    gr.Number(1, label=t("seed", "zh"), minimum=1, maximum=SEED_MAX, precision=0, scale=2),
                    "seed",
                )
                dice = gr.Button("🎲", elem_id="vf-dice", scale=0, min_width=48)
                speed = texts.label(
                    gr.Slider(
                        0.5, 2.0, value=1.0, step=0.05, label=t("speed", "zh"), scale=3, elem_id="vf-speed"
                    ),
                    "speed",
                )
            with gr.Row(equal_height=True):
                fmt = texts.label(gr.Dropdown(FORMATS, value="wav", label=t("format", "zh")), "format")
                stream = texts.label(gr.Checkbox(False, label=t("stream", "zh")), "stream")
            generate = texts.value(
                gr.Button(t("generate", "zh"), variant="primary", elem_id="vf-generate"), "generate"
            )
        with gr.Column(scale=2, min_width=300):
            status = gr.Markdown(elem_id="vf-status", padding=True)
            live = gr.HTML("", visible=False, elem_id="vf-live", js_on_load=None)
            result = texts.label(
                gr.Audio(
                    type="filepath",
                    label=t("result", "zh"),
                    interactive=False,
                    buttons=["download"],
                    elem_id="vf-result",
                ),
                "result",
            )
            compare = texts.label(
                gr.Audio(type="filepath", label=t("compare", "zh"), interactive=False, visible=False),
                "compare",
            )
    return GenerateTab(  # by name: two Markdowns or Textboxes cannot swap places
        engine=engine, engine_status=engine_status, mode=mode, help=help_, text=text, voice=voice,
        prompt_box=prompt_box, prompt=prompt, prompt_status=prompt_status, prompt_text=prompt_text,
        save_name=save_name, save=save, consent=consent, instruct_box=instruct_box, instruct=instruct,
        presets=presets, preset_note=preset_note, seed=seed, dice=dice, speed=speed, format=fmt,
        stream=stream, generate=generate, status=status, live=live, result=result, compare=compare,
    )  # fmt: skip


def wire(tab: GenerateTab, page: Page, history: HistoryTab, svc: ServicesFn) -> None:
    """The mode switch, the prompt check, dice and presets, and Generate."""

    async def on_mode(mode: str, choice: str, engine: str | None, request: gr.Request) -> list[Any]:
        principal = await admission.ui_principal(svc(), request.cookies)
        return [
            t(f"help.{mode}", lang_code(choice)),
            gr.update(visible=mode != "preset"),
            gr.update(visible=mode == "instruct"),
            await voice_update(svc(), mode, engine or None, principal, lang_code(choice)),
        ]

    outputs = [tab.help, tab.prompt_box, tab.instruct_box, tab.voice]
    tab.mode.change(on_mode, [tab.mode, page.lang, tab.engine], outputs)
    tab.dice.click(lambda: random.randint(1, SEED_MAX), None, tab.seed, show_progress="hidden")
    for button, (_zh, _en, instruction, _control) in zip(tab.presets, PRESETS, strict=True):
        button.click(lambda s=instruction: s, None, tab.instruct, show_progress="hidden")

    async def on_prompt(path: str | None, choice: str, request: gr.Request) -> AsyncIterator[tuple[str, Any]]:
        lang = lang_code(choice)
        if not path:
            yield "", gr.update(value="")
            return
        s = svc()
        try:  # the check shows Whisper's transcript: a transcription, as POST /v1/audio/transcriptions
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, client_ip(request), "asr", "transcribe"):
                yield t("msg.checking", lang), gr.update()
                check = await s.pool.run(
                    functools.partial(actions.check_prompt, s.speech.models, Path(path)),
                    timeout=s.settings.enroll_timeout_s,
                )
        except Exception as e:
            yield error_message(e, lang, "prompt", lead="msg.prompt_bad"), gr.update()
            return
        message = t("msg.prompt_ok", lang, rate=check.rate, speech=check.speech_s)
        notes = [
            *check.notes,
            *([t("msg.doubtful", lang, words="、".join(check.doubtful))] if check.doubtful else []),
        ]
        yield message + "".join(f"\n- {n}" for n in notes), gr.update(value=check.transcript)

    for event in (tab.prompt.upload, tab.prompt.stop_recording):
        event(on_prompt, [tab.prompt, page.lang], [tab.prompt_status, tab.prompt_text])
    tab.prompt.clear(lambda: ("", ""), None, [tab.prompt_status, tab.prompt_text])

    inputs = Inputs(GenerateForm, tab, page)

    async def on_generate(
        values: dict[Any, Any],
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for a bar)
    ) -> AsyncIterator[dict[Any, Any]]:
        # closed with this handler (a page that went away), so the door's audit row and the
        # stream's cleanup run then, not whenever the generator is collected
        async with contextlib.aclosing(
            press(svc(), tab, page, history, inputs.read(values), request, progress)
        ) as updates:
            async for update in updates:
                yield update

    outputs = [tab.status, tab.result, tab.live, tab.compare, page.history, history.html]
    tab.generate.click(
        on_generate,
        inputs.inputs,
        outputs,
        concurrency_limit=None,  # the engine pool queues and bounds the work, not Gradio
        show_progress_on=tab.result,
    )
    tab.stream.change(lambda on: gr.update(visible=on), tab.stream, tab.live, show_progress="hidden")


async def press(
    s: Services,
    tab: GenerateTab,
    page: Page,
    history: HistoryTab,
    pressed: GenerateForm,
    request: gr.Request,
    progress: gr.Progress,
) -> AsyncGenerator[dict[Any, Any], None]:
    """One press of Generate, as updates of the status line, the players and the history."""
    lang = lang_code(pressed.lang)
    task_id = new_task_id()
    form = pressed.request()
    problem = _missing(form, lang)
    if problem:
        yield {tab.status: problem}
        return
    compare = gr.update(value=pressed.prompt if form.prompt else None, visible=form.prompt is not None)
    try:  # POST /tts's admission: the scope, its rate limit, the text (filter, quota), an audit row
        principal = await admission.ui_principal(s, request.cookies)
        async with admission.door(
            s, principal, client_ip(request), "tts", "generate", trace=task_id
        ) as ticket:
            await admission.check_text(s, ticket, form.text, prompt_text=form.prompt_text)
            log.info(
                "[%s] UI generate: %d chars, mode %s, engine %s",
                task_id,
                len(form.text),
                form.mode,
                form.engine or s.speech.models.name_of(None),
            )
            progress(0, desc=t("msg.queued", lang))
            yield {tab.status: t("msg.queued", lang), tab.live: ""}
            notes: list[str] = []
            if pressed.stream:
                stored: Output | None = None
                async for item in render.streamed(s, form, task_id, lang, progress):
                    if isinstance(item, Output):
                        stored = item
                    else:
                        yield {tab.status: item[0], tab.live: item[1], tab.compare: compare}
                assert stored is not None  # the last item is the stored take
                output = stored
            else:
                output, notes = await render.rendered(s, form, task_id, lang, progress)
            await admission.grant_output(s, principal, output.name)  # its /outputs link and file
    except Exception as e:
        yield {tab.status: error_message(e, lang, task_id)}
        return
    cached = t("msg.cached", lang) if output.cached else ""
    done = t("msg.done", lang, duration=output.duration, task=output.task_id, cached=cached)
    entries = remember(pressed.history, form.mode, form.text, output)
    yield {
        tab.status: done + "".join(f"\n- {n}" for n in notes),
        tab.result: str(s.speech.storage.path(output.name)),
        tab.compare: compare,
        page.history: entries,
        history.html: history_html(entries, lang),
    }


def voice_choices(
    mode: str, stock: Sequence[VoiceInfo], saved: Sequence[VoiceRecord], lang: str = "zh"
) -> list[tuple[str, str]]:
    """The voice picker's (label, value) choices for ``mode``: the engine's default first (the
    voice every door speaks when none is named, by the text's language: engines.base.default_voice),
    then its stock voices by display name (preset), the saved ones after a "none" choice (the
    cloning modes, where a prompt may be given instead), or both (instruct)."""
    saved_choices = [(f"{r.name} ({r.language})", r.id) for r in saved]
    default = [(t("voice.default", lang, voices=_defaults(stock)), "")] if stock else []
    stock_choices = [*default, *((v.label, v.name) for v in stock)]
    if mode == "preset":
        return stock_choices
    if mode in ("zero_shot", "cross_lingual"):
        return [("—", ""), *saved_choices]
    return [*stock_choices, *saved_choices]


def _defaults(stock: Sequence[VoiceInfo]) -> str:
    """Which voice each text language defaults to: "zh, en: Gongitsune (Japanese, female)"."""
    pairs = [(v.label, [x for x in v.default_for if x != "*"]) for v in stock]
    return "; ".join(f"{', '.join(langs)}: {label}" for label, langs in pairs if langs) or "—"


async def voice_update(
    svc: Services, mode: str, engine: str | None, principal: Principal, lang: str = "zh"
) -> Any:
    """The voice picker's update: the engine's stock voices, and the saved ones for a caller that
    may list them (the 'voices' scope, as GET /v1/voices needs); the first one (the default) chosen."""
    try:  # the engine's stock voices (loading it, off the event loop, the first time)
        stock = await asyncio.to_thread(lambda: svc.speech.models.get(engine).voices())
    except VoiceforgeError:  # an engine that cannot load: the engine picker says why
        stock = []
    saved = await asyncio.to_thread(svc.library.list) if admission.allows(principal, "voices") else []
    choices = voice_choices(mode, stock, saved, lang)
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


def _missing(form: actions.Form, lang: str) -> str:
    if not form.text:
        return t("msg.need_text", lang)
    if form.mode in ("zero_shot", "cross_lingual") and form.prompt is None and not form.voice:
        return t("msg.need_prompt", lang)
    if form.mode == "instruct" and not form.instruct:
        return t("msg.need_instruct", lang)
    return ""


def _label(zh: str, en: str, lang: str) -> dict[str, Any]:
    return gr.update(value=en if lang == "en" else zh)
