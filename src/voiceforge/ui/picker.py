"""The engine picker on the generate tab: the modes, instruction presets, streaming, speed and the
seed dice follow what the chosen engine can do (:mod:`voiceforge.ui.engines`), and each control it
disables says why, in the page's language. Runs on load, on a language switch and on each pick."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from voiceforge.server import admission
from voiceforge.ui.common import Inputs, Page, ServicesFn, error_message, lang_code
from voiceforge.ui.engines import EngineView, engine_view
from voiceforge.ui.generate import GenerateTab, voice_update
from voiceforge.ui.i18n import mode_choices


@dataclass(frozen=True)
class PickForm:
    """What the engine's controls depend on."""

    engine: str | None
    lang: str
    mode: str
    stream: bool


def wire(tab: GenerateTab, page: Page, svc: ServicesFn, after: Iterable[Dependency]) -> None:
    """Wire the picker and the streaming box; ``after`` are the events (page load, language
    switch) the controls are brought up to date after."""
    inputs = Inputs(PickForm, tab, page)
    outputs = [tab.engine_status, tab.mode, *tab.presets, tab.preset_note, tab.stream, tab.speed, tab.seed,
               tab.dice]  # fmt: skip

    async def view_of(engine: str | None, lang: str) -> EngineView:
        s = svc()
        name = s.speech.models.name_of(engine or None)
        engine_obj = await asyncio.to_thread(s.speech.models.get, name)  # loading takes seconds
        return engine_view(name, engine_obj.capabilities, lang)

    async def updated(form: PickForm) -> tuple[dict[Any, Any], str]:
        """The controls' updates, and the mode left selected (kept when the engine offers it)."""
        lang = lang_code(form.lang)
        try:
            view = await view_of(form.engine, lang)
        except Exception as e:  # not loadable here (no model directory, package missing): say so
            return {
                tab.engine_status: gr.update(value=error_message(e, lang, "engine"), visible=True)
            }, form.mode
        # Values are set only where the engine rules them out: the inputs may be a click old by now.
        mode, stream = form.mode, form.stream
        choices = mode_choices(lang, view.modes)
        modes = gr.update(choices=choices, info=view.mode_note)
        if mode not in view.modes and view.modes:
            mode = view.modes[0]
            modes = gr.update(choices=choices, value=mode, info=view.mode_note)
        streams = gr.update(interactive=True, info="")
        if not view.streaming:
            stream = False
            streams = gr.update(interactive=False, value=False, info=view.stream_note)
        return {
            tab.engine_status: gr.update(value="", visible=False),
            tab.mode: modes,
            **{
                button: gr.update(interactive=on)
                for button, on in zip(tab.presets, view.presets, strict=True)
            },
            tab.preset_note: gr.update(value=view.preset_note, visible=bool(view.preset_note)),
            tab.stream: streams,
            tab.speed: speed_update(view, bool(stream)),
            tab.seed: gr.update(info=view.seed_note),
            tab.dice: gr.update(visible=not view.seed_note),  # no 🎲 where the seed changes nothing
        }, mode

    async def apply(values: dict[Any, Any]) -> dict[Any, Any]:
        updates, _mode = await updated(inputs.read(values))
        return updates

    async def on_pick(values: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
        form = inputs.read(values)
        updates, mode = await updated(form)
        principal = await admission.ui_principal(svc(), request.cookies)
        return {**updates, tab.voice: await voice_update(svc(), mode, form.engine or None, principal)}

    async def on_stream(values: dict[Any, Any]) -> Any:
        form = inputs.read(values)
        try:
            return speed_update(await view_of(form.engine, lang_code(form.lang)), bool(form.stream))
        except Exception:  # apply() already shows why the engine is unusable
            return gr.update()

    tab.engine.change(on_pick, inputs.inputs, [*outputs, tab.voice], show_progress="hidden")
    for event in after:
        event.then(apply, inputs.inputs, outputs, show_progress="hidden")
    tab.stream.change(on_stream, inputs.inputs, tab.speed, show_progress="hidden")


def speed_update(view: EngineView, streaming: bool) -> Any:
    """The speed slider: fixed at 1 while streaming on an engine that cannot change it then."""
    if streaming and not view.speed_when_streaming:
        return gr.update(interactive=False, value=1.0, info=view.speed_note)
    return gr.update(interactive=True, info="")
