"""The Gradio web UI, composed: the title, the language switch and the four tabs (generate,
voice library, this browser's history, the admins' backend view), in Chinese and English.

Each tab is a module with a dataclass of its components, a ``build`` and a ``wire``; this one
builds the page around them and wires what spans tabs (page load, the language switch).
Handlers are async and only await: blocking work goes to the engine worker pool through
:mod:`voiceforge.ui.actions`. Errors show as a line a person can act on, never a traceback.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.events import Dependency

from voiceforge.server import admission
from voiceforge.ui import backend, generate, history, library, picker
from voiceforge.ui.common import Page, ServicesFn, lang_code
from voiceforge.ui.i18n import LANGS, Texts, t

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


def build(get_services: ServicesFn) -> gr.Blocks:
    """The UI, bound to the services the app's lifespan builds (read when a handler runs)."""
    texts = Texts()
    demo: gr.Blocks
    # Gradio keeps a copy of each result it serves; an hourly sweep drops those older than a day.
    with gr.Blocks(title="voiceforge", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        lang_store = gr.BrowserState("zh", storage_key="voiceforge-lang")
        entries = gr.BrowserState([], storage_key="voiceforge-history")
        with gr.Row(equal_height=True):  # on a phone the two wrap onto their own lines
            with gr.Column(scale=4, min_width=280):
                texts.value(gr.Markdown(t("title", "zh"), elem_id="vf-title"), "title")
            with gr.Column(scale=1, min_width=200):
                lang = gr.Radio(
                    list(LANGS), value="中文", show_label=False, container=False, elem_id="vf-lang"
                )
        page = Page(lang=lang, lang_store=lang_store, history=entries)
        with gr.Tabs(elem_id="vf-tabs", overflow_behavior="wrap"):  # all four stay visible on a phone
            gen = generate.build(texts)
            lib = library.build(texts)
            hist = history.build(texts)
            admin = backend.build(texts)
        events = _wire_page(demo, page, texts, gen, lib, hist, admin, get_services)
        generate.wire(gen, page, hist, get_services)
        picker.wire(gen, page, get_services, after=events)
        library.wire(lib, page, get_services)
        library.wire_save(gen, lib, page, get_services)
        history.wire(hist, page)
        backend.wire(admin, page, get_services)
    return demo


def _wire_page(
    demo: gr.Blocks,
    page: Page,
    texts: Texts,
    gen: generate.GenerateTab,
    lib: library.LibraryTab,
    hist: history.HistoryTab,
    admin: backend.BackendTab,
    svc: ServicesFn,
) -> list[Dependency]:
    """The page load and the language switch; returns their events (the engine picker follows them)."""

    def switch(choice: str, mode: str) -> list[Any]:
        lang = lang_code(choice)
        return [lang, t(f"help.{mode}", lang), backend.log_panel(lang), *texts.updates(lang)]

    outputs = [page.lang_store, gen.help, admin.log_panel, *texts.components]
    lang_switch = page.lang.change(switch, [page.lang, gen.mode], outputs, show_progress="hidden")

    async def on_load(stored: str, entries: list[dict[str, Any]], request: gr.Request) -> list[Any]:
        lang = stored if stored in ("zh", "en") else "zh"
        principal = await admission.ui_principal(svc(), request.cookies)
        names = svc().speech.models.names
        return [
            "English" if lang == "en" else "中文",
            gr.update(visible="admin" in principal.scopes),
            history.history_html(entries, lang),
            # the picker shows only where VOICEFORGE_ENGINES offers a choice
            gr.update(choices=names, value=names[0], visible=len(names) > 1),
            await generate.voice_update(svc(), "preset", names[0], principal, lang),
        ]

    inputs = [page.lang_store, page.history]
    page_load = demo.load(on_load, inputs, [page.lang, admin.tab, hist.html, gen.engine, gen.voice])

    async def listing(choice: str, request: gr.Request) -> dict[Any, Any]:
        return await library.listing(svc, lib, choice, request)

    demo.load(listing, [page.lang], [lib.table, lib.pick])
    return [page_load, lang_switch]
