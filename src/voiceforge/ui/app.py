"""The Gradio web UI: the four CosyVoice modes, the voice library, this browser's history, the
backend log view and the engine restart, in Chinese and English.

Handlers are async and only await: blocking work goes to the engine worker pool through
:mod:`voiceforge.ui.actions`. Errors show as a line a person can act on, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import html
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from starlette.concurrency import run_in_threadpool

from voiceforge.audio.encode import encode, parse_format
from voiceforge.errors import VoiceforgeError
from voiceforge.server import admission
from voiceforge.server.auth import Principal
from voiceforge.server.state import Services
from voiceforge.service.speech import Output, new_task_id
from voiceforge.service.streaming import PoolStream
from voiceforge.ui import actions
from voiceforge.ui.engines import EngineView, engine_view
from voiceforge.ui.i18n import LANGS, MODES, PRESETS, Texts, explain, mode_choices, t
from voiceforge.voices.library import VoiceRecord

log = logging.getLogger(__name__)

FORMATS = ["wav", "mp3", "flac", "opus", "aac"]
HISTORY = 30  # entries kept per browser
SEED_MAX = 100_000_000
CSS = """
.vf-hist { border-bottom: 1px solid var(--border-color-primary); padding: .5rem 0; }
.vf-hist p { margin: .2rem 0; overflow-wrap: anywhere; }
.vf-hist small { color: var(--body-text-color-subdued); }
.vf-hist audio { width: 100%; max-width: 28rem; }
#vf-dice { max-width: 4rem; min-width: 3rem; }
#vf-title h1 { word-break: keep-all; overflow-wrap: normal; }
@media (max-width: 640px) { #vf-title h1 { font-size: 1.3rem; } }
#vf-lang { max-width: 14rem; margin-left: auto; }
#vf-logview .vf-logbar { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center;
  margin-bottom: .4rem; }
#vf-logview input[type=text], #vf-logview input:not([type]), #vf-logview select {
  border: 1px solid var(--border-color-primary); border-radius: var(--radius-sm); padding: .25rem .4rem;
  background: var(--input-background-fill); font-size: .9rem; width: auto; }
#vf-logview button { border: 1px solid var(--border-color-primary); border-radius: var(--radius-sm);
  padding: .2rem .7rem; font-size: .9rem; }
#vf-logview pre { height: 26rem; overflow-y: auto; background: #111; padding: .5rem; margin: 0;
  font-size: 12px; line-height: 1.35; white-space: pre-wrap; overflow-wrap: anywhere; }
#vf-logview pre span { color: #e5e7eb; }
#vf-logview pre span.WARNING { color: #fbbf24; }
#vf-logview pre span.ERROR, #vf-logview pre span.CRITICAL { color: #f87171; }
#vf-logview pre span.DEBUG { color: #9ca3af; }
"""


def build(get_services: Callable[[], Services]) -> gr.Blocks:
    """The UI, bound to the services the app's lifespan builds (read when a handler runs)."""
    texts = Texts()
    demo: gr.Blocks
    # Gradio keeps a copy of each result it serves; an hourly sweep drops those older than a day.
    with gr.Blocks(title="voiceforge", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        c: dict[str, Any] = {
            "lang_store": gr.BrowserState("zh", storage_key="voiceforge-lang"),
            "history": gr.BrowserState([], storage_key="voiceforge-history"),
        }
        with gr.Row(equal_height=True):  # on a phone the two wrap onto their own lines
            with gr.Column(scale=4, min_width=280):
                texts.value(gr.Markdown(t("title", "zh"), elem_id="vf-title"), "title")
            with gr.Column(scale=1, min_width=200):
                c["lang"] = gr.Radio(
                    list(LANGS), value="中文", show_label=False, container=False, elem_id="vf-lang"
                )
        with gr.Tabs(elem_id="vf-tabs", overflow_behavior="wrap"):  # all four stay visible on a phone
            with texts.label(gr.Tab(t("tab.generate", "zh"), id="generate"), "tab.generate"):
                c.update(_generate_tab(texts))
            with texts.label(gr.Tab(t("tab.library", "zh"), id="library"), "tab.library"):
                c["lib"] = _library_tab(texts)
            with texts.label(gr.Tab(t("tab.history", "zh"), id="history"), "tab.history"):
                c["history_html"] = gr.HTML(t("history.empty", "zh"), elem_id="vf-history")
                c["clear"] = texts.value(gr.Button(t("history.clear", "zh"), size="sm"), "history.clear")
            backend = gr.Tab(t("tab.backend", "zh"), id="backend", visible=False)
            with texts.label(backend, "tab.backend"):
                with gr.Row(equal_height=True):
                    texts.value(gr.Markdown(t("restart.help", "zh")), "restart.help")
                    restart = gr.Button(t("restart", "zh"), variant="stop", scale=0, min_width=160)
                    c["restart"] = texts.value(restart, "restart")
                c["restart_status"] = gr.Markdown(elem_id="vf-restart-status")
                c["log_panel"] = gr.HTML(_log_panel("zh"), js_on_load=None)
            c["backend"] = backend
        _wire_page(demo, c, texts, get_services)
        _wire_generate(c, get_services)
        _wire_engine(demo, c, get_services)
        _wire_generate_button(c, get_services)
        _wire_save(c, get_services)
        _wire_library(c["lib"], get_services, c["lang"])
        _wire_restart(c, get_services)
    return demo


# -- wiring --------------------------------------------------------------------------------------
def _wire_page(demo: gr.Blocks, c: dict[str, Any], texts: Texts, svc: Callable[[], Services]) -> None:
    def switch(choice: str, mode: str) -> list[Any]:
        lang_code = _code(choice)
        return [
            lang_code,
            t(f"help.{mode}", lang_code),
            _log_panel(lang_code),
            *texts.updates(lang_code),
        ]

    c["lang_switch"] = c["lang"].change(  # _wire_engine chains the engine's notes (and modes) to it
        switch,
        [c["lang"], c["mode"]],
        [c["lang_store"], c["help"], c["log_panel"], *texts.components],
        show_progress="hidden",
    )

    async def on_load(stored: str, entries: list[dict[str, Any]], request: gr.Request) -> list[Any]:
        lang_code = stored if stored in ("zh", "en") else "zh"
        principal = await admission.ui_principal(svc(), request.cookies)
        admin = "admin" in principal.scopes
        names = svc().speech.models.names
        return [
            "English" if lang_code == "en" else "中文",
            gr.update(visible=admin),
            _history_html(entries, lang_code),
            # the picker shows only where VOICEFORGE_ENGINES offers a choice
            gr.update(choices=names, value=names[0], visible=len(names) > 1),
            *(await _voice_choices(svc(), "preset", names[0], principal)),
        ]

    c["page_load"] = demo.load(  # _wire_engine chains the engine's notes to it
        on_load,
        [c["lang_store"], c["history"]],
        [c["lang"], c["backend"], c["history_html"], c["engine"], c["voice"]],
    )

    async def library(choice: str, request: gr.Request) -> tuple[Any, Any]:
        return await _library_refresh(svc, choice, request)

    demo.load(library, [c["lang"]], [c["lib"]["table"], c["lib"]["pick"]])


def _wire_generate(c: dict[str, Any], svc: Callable[[], Services]) -> None:
    async def on_mode(mode: str, choice: str, engine: str | None, request: gr.Request) -> list[Any]:
        cloning = mode != "preset"
        principal = await admission.ui_principal(svc(), request.cookies)
        return [
            t(f"help.{mode}", _code(choice)),
            gr.update(visible=cloning),
            gr.update(visible=mode == "instruct"),
            *(await _voice_choices(svc(), mode, engine or None, principal)),
        ]

    c["mode"].change(
        on_mode,
        [c["mode"], c["lang"], c["engine"]],
        [c["help"], c["prompt_box"], c["instruct_box"], c["voice"]],
    )
    c["dice"].click(lambda: random.randint(1, SEED_MAX), None, c["seed"], show_progress="hidden")
    for button, instruction, _control in c["presets"]:
        button.click(lambda s=instruction: s, None, c["instruct"], show_progress="hidden")

    async def on_prompt(path: str | None, choice: str, request: gr.Request) -> AsyncIterator[tuple[str, Any]]:
        lang_code = _code(choice)
        if not path:
            yield "", gr.update(value="")
            return
        s = svc()
        try:  # the check shows Whisper's transcript: a transcription, as POST /v1/audio/transcriptions
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, _ip(request), "asr", "transcribe"):
                yield t("msg.checking", lang_code), gr.update()
                check = await s.pool.run(
                    functools.partial(actions.check_prompt, s.speech.models, Path(path)),
                    timeout=s.settings.enroll_timeout_s,
                )
        except Exception as e:
            yield _explain(e, lang_code, "prompt", lead="msg.prompt_bad"), gr.update()
            return
        message = t("msg.prompt_ok", lang_code, rate=check.rate, speech=check.speech_s)
        notes = "".join(f"\n- {n}" for n in check.notes)
        yield message + notes, gr.update(value=check.transcript)

    for event in (c["prompt"].upload, c["prompt"].stop_recording):
        event(on_prompt, [c["prompt"], c["lang"]], [c["prompt_status"], c["prompt_text"]])
    c["prompt"].clear(lambda: ("", ""), None, [c["prompt_status"], c["prompt_text"]])


def _wire_engine(demo: gr.Blocks, c: dict[str, Any], svc: Callable[[], Services]) -> None:
    """The engine picker: the modes, instruction presets, streaming and speed follow what the chosen
    engine can do, and each control it disables says why, in the page's language. Runs on load, on
    a language switch and on each pick."""
    buttons = [button for button, _instruction, _control in c["presets"]]
    outputs = [c["engine_status"], c["mode"], *buttons, c["preset_note"], c["stream"], c["speed"], c["seed"],
               c["dice"]]  # fmt: skip

    async def view_of(engine: str | None, lang_code: str) -> EngineView:
        s = svc()
        name = s.speech.models.name_of(engine or None)
        engine_obj = await asyncio.to_thread(s.speech.models.get, name)  # loading takes seconds
        return engine_view(name, engine_obj.capabilities, lang_code)

    async def apply(engine: str | None, choice: str, mode: str, stream: bool) -> list[Any]:
        updates, _mode = await updated(engine, choice, mode, stream)
        return updates

    async def updated(engine: str | None, choice: str, mode: str, stream: bool) -> tuple[list[Any], str]:
        """The outputs' updates, and the mode left selected (kept when the engine offers it)."""
        lang_code = _code(choice)
        try:
            view = await view_of(engine, lang_code)
        except Exception as e:  # not loadable here (no model directory, package missing): say so
            status = gr.update(value=_explain(e, lang_code, "engine"), visible=True)
            return [status, *(gr.update() for _ in outputs[1:])], mode
        # Values are set only where the engine rules them out: the inputs may be a click old by now.
        choices = mode_choices(lang_code, view.modes)
        modes = gr.update(choices=choices, info=view.mode_note)
        if mode not in view.modes and view.modes:
            mode = view.modes[0]
            modes = gr.update(choices=choices, value=mode, info=view.mode_note)
        streams = gr.update(interactive=True, info="")
        if not view.streaming:
            stream = False
            streams = gr.update(interactive=False, value=False, info=view.stream_note)
        return [
            gr.update(value="", visible=False),
            modes,
            *(gr.update(interactive=on) for on in view.presets),
            gr.update(value=view.preset_note, visible=bool(view.preset_note)),
            streams,
            _speed_update(view, bool(stream)),
            gr.update(info=view.seed_note),
            gr.update(visible=not view.seed_note),  # no 🎲 where the seed changes nothing
        ], mode

    async def on_pick(
        engine: str | None, choice: str, mode: str, stream: bool, request: gr.Request
    ) -> list[Any]:
        updates, mode = await updated(engine, choice, mode, stream)
        principal = await admission.ui_principal(svc(), request.cookies)
        return [*updates, *(await _voice_choices(svc(), mode, engine or None, principal))]

    async def on_stream(engine: str | None, choice: str, stream: bool) -> Any:
        try:
            return _speed_update(await view_of(engine, _code(choice)), bool(stream))
        except Exception:  # apply() already shows why the engine is unusable
            return gr.update()

    inputs = [c["engine"], c["lang"], c["mode"], c["stream"]]
    c["engine"].change(on_pick, inputs, [*outputs, c["voice"]], show_progress="hidden")
    c["page_load"].then(apply, inputs, outputs, show_progress="hidden")
    c["lang_switch"].then(apply, inputs, outputs, show_progress="hidden")
    c["stream"].change(on_stream, [c["engine"], c["lang"], c["stream"]], c["speed"], show_progress="hidden")


def _wire_generate_button(c: dict[str, Any], svc: Callable[[], Services]) -> None:
    async def on_generate(
        choice: str,
        engine: str | None,
        mode: str,
        text: str,
        voice: str | None,
        prompt: str | None,
        prompt_text: str,
        instruct: str,
        seed: float,
        speed: float,
        fmt: str,
        stream: bool,
        entries: list[dict[str, Any]],
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for a bar)
    ) -> AsyncIterator[list[Any]]:
        lang_code = _code(choice)
        task_id = new_task_id()
        keep = gr.update()
        form = actions.Form(
            text=(text or "").strip(),
            mode=mode,
            voice=voice or None,
            prompt=Path(prompt) if prompt and mode != "preset" else None,
            prompt_text=(prompt_text or "").strip() or None,  # cross-lingual too: it helps enrollment
            instruct=(instruct or "").strip() or None if mode == "instruct" else None,
            seed=int(seed or 1),
            speed=float(speed),
            format=fmt,
            engine=engine or None,
        )
        problem = _missing(form, lang_code)
        if problem:
            yield [problem, keep, keep, keep, keep, keep]
            return
        compare = gr.update(value=prompt if form.prompt else None, visible=form.prompt is not None)
        s = svc()
        try:  # POST /tts's admission: the scope, its rate limit, the text (filter, quota), an audit row
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, _ip(request), "tts", "generate", trace=task_id) as ticket:
                await admission.check_text(s, ticket, form.text, prompt_text=form.prompt_text)
                log.info(
                    "[%s] UI generate: %d chars, mode %s, engine %s",
                    task_id,
                    len(form.text),
                    form.mode,
                    form.engine or s.speech.models.name_of(None),
                )
                progress(0, desc=t("msg.queued", lang_code))
                yield [t("msg.queued", lang_code), keep, "", keep, keep, keep]
                notes: list[str] = []
                if stream:
                    streamed: Output | None = None
                    async for update, streamed in _streamed(s, form, task_id, lang_code, progress):
                        if streamed is None:
                            yield [*update, compare, keep, keep]
                    assert streamed is not None  # the last update carries the stored take
                    output = streamed
                else:
                    output, notes = await _rendered(s, form, task_id, lang_code, progress)
                await admission.grant_output(s, principal, output.name)  # its /outputs link and file
        except Exception as e:
            yield [_explain(e, lang_code, task_id), keep, keep, keep, keep, keep]
            return
        path = s.speech.storage.path(output.name)
        cached = t("msg.cached", lang_code) if output.cached else ""
        done = t("msg.done", lang_code, duration=output.duration, task=output.task_id, cached=cached)
        entry = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "mode": form.mode,
            "text": form.text[:200],
            "url": output.url,
            "duration": output.duration,
        }
        entries = [entry, *(entries or [])][:HISTORY]
        status = done + "".join(f"\n- {n}" for n in notes)
        yield [status, str(path), keep, compare, entries, _history_html(entries, lang_code)]

    c["generate"].click(
        on_generate,
        [
            c["lang"],
            c["engine"],
            c["mode"],
            c["text"],
            c["voice"],
            c["prompt"],
            c["prompt_text"],
            c["instruct"],
            c["seed"],
            c["speed"],
            c["format"],
            c["stream"],
            c["history"],
        ],
        [c["status"], c["result"], c["live"], c["compare"], c["history"], c["history_html"]],
        concurrency_limit=None,  # the engine pool queues and bounds the work, not Gradio
        show_progress_on=c["result"],
    )
    c["stream"].change(lambda on: gr.update(visible=on), c["stream"], c["live"], show_progress="hidden")
    c["clear"].click(
        lambda choice: ([], _history_html([], _code(choice))), c["lang"], [c["history"], c["history_html"]]
    )


def _wire_save(c: dict[str, Any], svc: Callable[[], Services]) -> None:
    async def on_save(name: str, prompt: str | None, prompt_text: str, consent: bool, choice: str,
                      request: gr.Request) -> list[Any]:  # fmt: skip
        lang_code = _code(choice)
        name = (name or "").strip()
        if not name:
            return [t("msg.need_name", lang_code), gr.update(), gr.update(), gr.update()]
        if not prompt:
            return [t("msg.need_prompt", lang_code), gr.update(), gr.update(), gr.update()]
        if not consent:
            return [t("msg.need_consent", lang_code), gr.update(), gr.update(), gr.update()]
        try:  # POST /v1/voices's admission: the 'voices' scope, its rate limit, an audit row
            s = svc()
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, _ip(request), "voices", "save_voice"):
                work = functools.partial(
                    actions.save_voice,
                    s.speech,
                    name,
                    Path(prompt),
                    (prompt_text or "").strip() or None,
                    consent_by=principal.id,
                )
                record = await s.pool.run(work, timeout=s.settings.enroll_timeout_s)
        except Exception as e:
            return [_explain(e, lang_code, "save"), gr.update(), gr.update(), gr.update()]
        log.info("UI saved voice %s (%s)", record.id, record.name)
        table, pick = await _library_refresh(svc, choice, request)
        return [t("msg.saved", lang_code, name=record.name, id=record.id), table, pick, gr.update()]

    c["save"].click(
        on_save,
        [c["save_name"], c["prompt"], c["prompt_text"], c["consent"], c["lang"]],
        [c["prompt_status"], c["lib"]["table"], c["lib"]["pick"], c["voice"]],
    )


def _wire_restart(c: dict[str, Any], svc: Callable[[], Services]) -> None:
    # -- c["backend"]: restart --------------------------------------------------------------------
    async def on_restart(choice: str, request: gr.Request) -> AsyncIterator[str]:
        # The same restarter POST /admin/restart runs.
        from voiceforge.server.restart import restarter_of

        lang_code = _code(choice)
        s = svc()
        try:
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, _ip(request), "admin", "restart"):
                restarter = restarter_of(s)
                task = restarter.start()
        except Exception as e:
            yield _explain(e, lang_code, "restart")
            return
        log.info("UI restart of the engine workers")
        while not task.done():
            yield t("msg.restart", lang_code, stage=restarter.current.stage or "…") + _stages(restarter)
            await asyncio.wait({task}, timeout=0.3)
        r = restarter.current
        if r.state == "failed":
            yield t("msg.restart_failed", lang_code) + (r.error or "") + _stages(restarter)
            return
        seconds = (r.finished_at or 0) - (r.started_at or 0)
        detail = r.stages[-1].detail if r.stages else ""
        yield t(
            "msg.restarted", lang_code, seconds=seconds, generation=r.generation, detail=detail
        ) + _stages(restarter)

    c["restart"].click(on_restart, c["lang"], c["restart_status"], concurrency_limit=None)


# -- layout --------------------------------------------------------------------------------------
def _generate_tab(texts: Texts) -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=3, min_width=320):
            # hidden until the page loads and the deployment offers more than one engine
            c["engine"] = texts.label(
                gr.Radio([], label=t("engine", "zh"), visible=False, elem_id="vf-engine"), "engine"
            )
            c["engine_status"] = gr.Markdown(visible=False, elem_id="vf-engine-status")
            c["mode"] = gr.Radio(mode_choices("zh"), value="preset", label=t("mode", "zh"), elem_id="vf-mode")
            texts.label(c["mode"], "mode")
            c["help"] = gr.Markdown(t("help.preset", "zh"), elem_id="vf-mode-help")
            c["text"] = texts.label(
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
            c["voice"] = texts.label(gr.Dropdown([], label=t("voice", "zh"), elem_id="vf-voice"), "voice")
            with gr.Group(visible=False) as c["prompt_box"]:
                c["prompt"] = texts.label(
                    gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label=t("prompt", "zh"),
                        elem_id="vf-prompt",
                    ),
                    "prompt",
                )
                c["prompt_status"] = gr.Markdown(elem_id="vf-prompt-status", padding=True)
                c["prompt_text"] = texts.label(
                    gr.Textbox(label=t("prompt_text", "zh"), lines=2, elem_id="vf-prompt-text"), "prompt_text"
                )
                with gr.Row(equal_height=True):
                    c["save_name"] = texts.label(
                        gr.Textbox(label=t("save.name", "zh"), scale=3, elem_id="vf-save-name"), "save.name"
                    )
                    c["save"] = texts.value(gr.Button(t("save", "zh"), scale=1, size="sm"), "save")
                c["consent"] = texts.label(
                    gr.Checkbox(False, label=t("save.consent", "zh"), elem_id="vf-consent"), "save.consent"
                )
            with gr.Group(visible=False) as c["instruct_box"]:
                c["instruct"] = texts.label(
                    gr.Textbox(
                        label=t("instruct", "zh"),
                        placeholder=t("instruct.placeholder", "zh"),
                        elem_id="vf-instruct",
                    ),
                    "instruct",
                    "instruct.placeholder",
                )
                with gr.Row():
                    c["presets"] = []
                    for zh, en, instruction, control in PRESETS:
                        button = gr.Button(zh, size="sm", min_width=60)
                        texts.add(button, functools.partial(_preset_label, zh, en))
                        c["presets"].append((button, instruction, control))
                # why some presets are disabled (the engine lacks their control)
                c["preset_note"] = gr.Markdown(visible=False, elem_id="vf-preset-note")
            with gr.Row(equal_height=True):
                c["seed"] = texts.label(
                    gr.Number(1, label=t("seed", "zh"), minimum=1, maximum=SEED_MAX, precision=0, scale=2),
                    "seed",
                )
                c["dice"] = gr.Button("🎲", elem_id="vf-dice", scale=0, min_width=48)
                c["speed"] = texts.label(
                    gr.Slider(
                        0.5, 2.0, value=1.0, step=0.05, label=t("speed", "zh"), scale=3, elem_id="vf-speed"
                    ),
                    "speed",
                )
            with gr.Row(equal_height=True):
                c["format"] = texts.label(
                    gr.Dropdown(FORMATS, value="wav", label=t("format", "zh")), "format"
                )
                c["stream"] = texts.label(gr.Checkbox(False, label=t("stream", "zh")), "stream")
            c["generate"] = texts.value(
                gr.Button(t("generate", "zh"), variant="primary", elem_id="vf-generate"), "generate"
            )
        with gr.Column(scale=2, min_width=300):
            c["status"] = gr.Markdown(elem_id="vf-status", padding=True)
            c["live"] = gr.HTML("", visible=False, elem_id="vf-live", js_on_load=None)
            c["result"] = texts.label(
                gr.Audio(
                    type="filepath",
                    label=t("result", "zh"),
                    interactive=False,
                    buttons=["download"],
                    elem_id="vf-result",
                ),
                "result",
            )
            c["compare"] = texts.label(
                gr.Audio(type="filepath", label=t("compare", "zh"), interactive=False, visible=False),
                "compare",
            )
    return c


def _library_tab(texts: Texts) -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["table"] = texts.label(
        gr.Dataframe(label=t("lib.list", "zh"), interactive=False, wrap=True, elem_id="vf-library"),
        "lib.list",
    )
    with gr.Row(equal_height=True):
        c["pick"] = texts.label(
            gr.Dropdown([], label=t("lib.pick", "zh"), scale=2, elem_id="vf-lib-pick"), "lib.pick"
        )
        c["refresh"] = texts.value(gr.Button(t("lib.refresh", "zh"), size="sm", scale=0), "lib.refresh")
    c["preview"] = texts.label(
        gr.Audio(type="filepath", label=t("lib.preview", "zh"), interactive=False, elem_id="vf-lib-preview"),
        "lib.preview",
    )
    with gr.Row(equal_height=True):
        c["new_name"] = texts.label(
            gr.Textbox(label=t("lib.new_name", "zh"), scale=2, elem_id="vf-lib-name"), "lib.new_name"
        )
        c["rename"] = texts.value(gr.Button(t("lib.rename", "zh"), size="sm", scale=0), "lib.rename")
        c["delete"] = texts.value(
            gr.Button(t("lib.delete", "zh"), size="sm", variant="stop", scale=0), "lib.delete"
        )
    c["status"] = gr.Markdown(padding=True, elem_id="vf-lib-status")
    return c


def _wire_library(c: dict[str, Any], svc: Callable[[], Services], lang: gr.Radio) -> None:
    async def refresh(choice: str, request: gr.Request) -> tuple[Any, Any]:
        return await _library_refresh(svc, choice, request)

    c["refresh"].click(refresh, lang, [c["table"], c["pick"]])

    async def preview(ref: str | None, request: gr.Request) -> Any:
        if not ref:
            return None
        s = svc()
        try:  # the recording, as GET /v1/voices/{id}/prompt serves it: the 'voices' scope
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, _ip(request), "voices", "voice_prompt"):
                return str(await asyncio.to_thread(s.library.prompt_path, ref))
        except VoiceforgeError:
            return None

    c["pick"].change(preview, c["pick"], c["preview"])

    async def change(
        action: str, ref: str | None, new_name: str, choice: str, request: gr.Request
    ) -> list[Any]:
        lang_code = _code(choice)
        new_name = (new_name or "").strip()
        if not ref:
            return [t("msg.need_voice", lang_code), gr.update(), gr.update()]
        if action == "rename" and not new_name:
            return [t("msg.need_name", lang_code), gr.update(), gr.update()]
        try:
            s = svc()
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, _ip(request), "voices", f"{action}_voice"):
                if action == "rename":
                    record = await asyncio.to_thread(s.library.rename, ref, new_name)
                    message = t("msg.renamed", lang_code, name=record.name)
                else:
                    record = await asyncio.to_thread(s.library.get, ref)
                    await asyncio.to_thread(s.library.delete, ref)
                    message = t("msg.deleted", lang_code, name=record.name)
            log.info("UI %s voice %s", action, record.id)
        except Exception as e:
            return [_explain(e, lang_code, action), gr.update(), gr.update()]
        table, pick = await refresh(choice, request)
        return [message, table, pick]

    async def rename(ref: str | None, new_name: str, choice: str, request: gr.Request) -> list[Any]:
        return await change("rename", ref, new_name, choice, request)

    async def delete(ref: str | None, new_name: str, choice: str, request: gr.Request) -> list[Any]:
        return await change("delete", ref, new_name, choice, request)

    for action, handler in (("rename", rename), ("delete", delete)):
        c[action].click(
            handler,
            [c["pick"], c["new_name"], lang],
            [c["status"], c["table"], c["pick"]],
        )


# -- work ----------------------------------------------------------------------------------------
async def _rendered(
    svc: Services, form: actions.Form, task_id: str, lang: str, progress: gr.Progress
) -> tuple[Any, list[str]]:
    """``actions.speak`` on the pool; its per-sentence progress drives the bar while it runs."""
    loop = asyncio.get_running_loop()
    reports: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    def report(done: int, total: int) -> None:
        loop.call_soon_threadsafe(reports.put_nowait, (done, total))

    work = functools.partial(actions.speak, svc.speech, form, task_id, report)
    task = asyncio.ensure_future(svc.pool.run(work, timeout=svc.settings.request_timeout_s))
    if form.prompt is not None:
        progress(0.02, desc=t("msg.enrolling", lang))
    while not task.done():
        await asyncio.wait({task}, timeout=0.2)
        while not reports.empty():
            done, total = reports.get_nowait()
            progress(done / total, desc=t("msg.stage", lang, done=done, total=total))
    return task.result()


async def _streamed(
    svc: Services, form: actions.Form, task_id: str, lang: str, progress: gr.Progress
) -> AsyncIterator[tuple[list[Any], Output | None]]:
    """Each sentence to the live player as soon as it is made (static/ui.js plays them back to
    back); at the end the whole take is stored in /outputs like a rendered one, and the last
    update carries its :class:`Output`."""
    chunks: list[np.ndarray] = []
    recent: list[str] = []
    rate = 24_000
    stream = PoolStream(
        svc.pool, functools.partial(actions.stream, svc.speech, form, task_id), task_id=task_id
    )
    try:
        async for chunk in stream:
            chunks.append(chunk.samples)
            rate = chunk.sample_rate
            done, total = chunk.index + 1, chunk.total
            progress(done / total, desc=t("msg.stage", lang, done=done, total=total))
            wav = base64.b64encode(encode(chunk.samples, rate, parse_format("wav"))).decode()
            # the last few sentences, so one the page missed between two updates still plays
            recent = [
                *recent[-2:],
                f'<i class="vf-chunk" data-id="{task_id}-{done}" data-src="data:audio/wav;base64,{wav}"></i>',
            ]
            live = f"<p>▶ {t('msg.stage', lang, done=done, total=total)}</p>{''.join(recent)}"
            yield [t("msg.stage", lang, done=done, total=total), gr.update(), live], None
    finally:
        stream.close()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    output = await run_in_threadpool(svc.speech.store, task_id, samples, rate, form.format)
    yield [], output


def _ip(request: gr.Request) -> str:
    return request.client.host if request.client else "-"


def _speed_update(view: EngineView, streaming: bool) -> Any:
    """The speed slider: fixed at 1 while streaming on an engine that cannot change it then."""
    if streaming and not view.speed_when_streaming:
        return gr.update(interactive=False, value=1.0, info=view.speed_note)
    return gr.update(interactive=True, info="")


def _missing(form: actions.Form, lang: str) -> str:
    if not form.text:
        return t("msg.need_text", lang)
    if form.mode in ("zero_shot", "cross_lingual") and form.prompt is None and not form.voice:
        return t("msg.need_prompt", lang)
    if form.mode == "instruct" and not form.instruct:
        return t("msg.need_instruct", lang)
    return ""


async def _voice_choices(svc: Services, mode: str, engine: str | None, principal: Principal) -> list[Any]:
    """The voice picker: the engine's stock voices, and the saved ones for a caller that may list
    them (the 'voices' scope, as GET /v1/voices needs)."""
    try:  # the engine's stock voices (loading it, off the event loop, the first time)
        stock = await asyncio.to_thread(svc.speech.stock_voices, engine)
    except VoiceforgeError:  # an engine that cannot load: the engine picker says why
        stock = []
    saved = await asyncio.to_thread(svc.library.list) if admission.allows(principal, "voices") else []
    saved_choices = [(f"{r.name} ({r.language})", r.id) for r in saved]
    if mode == "preset":
        choices: list[tuple[str, str]] = [(v, v) for v in stock]
    elif mode in ("zero_shot", "cross_lingual"):
        choices = [("—", ""), *saved_choices]
    else:
        choices = [*((v, v) for v in stock), *saved_choices]
    return [gr.update(choices=choices, value=choices[0][1] if choices else None)]


async def _library_refresh(svc: Callable[[], Services], choice: str, request: gr.Request) -> tuple[Any, Any]:
    """The library table (names, transcripts): what GET /v1/voices lists, to the same scope."""
    s = svc()
    principal = await admission.ui_principal(s, request.cookies)
    records: list[VoiceRecord] = []
    if admission.allows(principal, "voices"):  # without it the tab stays empty (no 403 row per load)
        try:
            async with admission.door(s, principal, _ip(request), "voices", "library"):
                records = await asyncio.to_thread(s.library.list)
        except VoiceforgeError:  # rate-limited, say: keep what the page shows
            return gr.update(), gr.update()
    headers = t("cols", _code(choice)).split(",")
    rows = [
        [r.name, r.id, r.language, r.transcript, r.created_at.strftime("%Y-%m-%d %H:%M")] for r in records
    ]
    table = gr.update(value={"headers": headers, "data": rows or [["", "", "", "", ""]]})
    pick = gr.update(choices=[(r.name, r.id) for r in records], value=None)
    return table, pick


def _explain(error: Exception, lang: str, task_id: str, lead: str = "msg.error") -> str:
    """The message for a person: a service error's own words, never a traceback."""
    if isinstance(error, VoiceforgeError):
        return explain(error, lang, lead)
    log.error("[%s] UI action failed", task_id, exc_info=error)
    return t("msg.internal", lang, task=task_id)


def _stages(restarter: Any) -> str:
    return "".join(f"\n- {s.stage}: {s.seconds:.2f} s {s.detail}" for s in restarter.current.stages)


def _history_html(entries: list[dict[str, Any]], lang: str) -> str:
    if not entries:
        return f"<p>{html.escape(t('history.empty', lang))}</p>"
    items = []
    for e in entries:
        url = html.escape(str(e.get("url", "")))
        mode = t(f"mode.{e.get('mode')}", lang) if e.get("mode") in MODES else ""
        items.append(
            f'<div class="vf-hist"><small>{html.escape(str(e.get("time", "")))} · {html.escape(mode)} · '
            f"{float(e.get('duration', 0)):.1f} s</small><p>{html.escape(str(e.get('text', '')))}</p>"
            f'<audio controls preload="none" src="{url}"></audio> <a href="{url}" download>⬇</a></div>'
        )
    return "".join(items)


def _log_panel(lang: str) -> str:
    """The log view's frame; static/ui.js fills it from GET /admin/logs/stream (SSE)."""
    levels = "".join(f'<option value="{v}">{v}</option>' for v in ("DEBUG", "INFO", "WARNING", "ERROR"))
    states = " ".join(f'data-{s}="{t(f"log.{s}", lang)}"' for s in ("connecting", "live", "reconnecting"))
    return (
        f'<div id="vf-logview" {states}><div class="vf-logbar">'
        f"<label>{t('log.level', lang)} <select data-vf=level>{levels}</select></label>"
        f'<label>{t("log.task", lang)} <input data-vf=task size="20"></label>'
        f"<label><input type=checkbox data-vf=pause> {t('log.pause', lang)}</label>"
        f'<button type="button" data-vf=clear>{t("log.clear", lang)}</button>'
        f'<span data-vf=state></span></div><pre data-vf=lines aria-live="polite"></pre></div>'
    )


def _preset_label(zh: str, en: str, lang: str) -> dict[str, Any]:
    return gr.update(value=en if lang == "en" else zh)


def _code(choice: str) -> str:
    return LANGS.get(choice, "zh")
