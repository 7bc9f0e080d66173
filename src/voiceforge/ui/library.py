"""The voice library tab (list, play back the recording, rename, delete) and the generate tab's
"save to library" button: what GET/POST/PATCH/DELETE /v1/voices do, behind the same admission
(the 'voices' scope, its rate limit, an audit row)."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from voiceforge.errors import VoiceforgeError
from voiceforge.server import admission
from voiceforge.service.learning import LearnState
from voiceforge.ui import actions
from voiceforge.ui.common import Inputs, Page, ServicesFn, client_ip, error_message, lang_code
from voiceforge.ui.generate import GenerateTab
from voiceforge.ui.i18n import Texts, t
from voiceforge.voices.library import VoiceRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LibraryTab:
    table: gr.Dataframe
    pick: gr.Dropdown  # the saved voice the buttons below act on
    refresh: gr.Button
    preview: gr.Audio
    new_name: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    status: gr.Markdown


@dataclass(frozen=True)
class ChangeForm:
    """Rename or Delete: the voice picked, the name typed (rename only)."""

    pick: str | None
    new_name: str | None
    lang: str


@dataclass(frozen=True)
class SaveForm:
    """The generate tab's "save to library": the prompt, its transcript, a name and the consent."""

    save_name: str | None
    prompt: str | None  # the recording's file path
    prompt_text: str | None
    consent: bool
    lang: str


def build(texts: Texts) -> LibraryTab:
    with texts.label(gr.Tab(t("tab.library", "zh"), id="library"), "tab.library"):
        table = texts.label(
            gr.Dataframe(label=t("lib.list", "zh"), interactive=False, wrap=True, elem_id="vf-library"),
            "lib.list",
        )
        with gr.Row(equal_height=True):
            pick = texts.label(
                gr.Dropdown([], label=t("lib.pick", "zh"), scale=2, elem_id="vf-lib-pick"), "lib.pick"
            )
            refresh = texts.value(gr.Button(t("lib.refresh", "zh"), size="sm", scale=0), "lib.refresh")
        preview = texts.label(
            gr.Audio(
                type="filepath", label=t("lib.preview", "zh"), interactive=False, elem_id="vf-lib-preview"
            ),
            "lib.preview",
        )
        with gr.Row(equal_height=True):
            new_name = texts.label(
                gr.Textbox(label=t("lib.new_name", "zh"), scale=2, elem_id="vf-lib-name"), "lib.new_name"
            )
            rename = texts.value(gr.Button(t("lib.rename", "zh"), size="sm", scale=0), "lib.rename")
            delete = texts.value(
                gr.Button(t("lib.delete", "zh"), size="sm", variant="stop", scale=0), "lib.delete"
            )
        status = gr.Markdown(padding=True, elem_id="vf-lib-status")
    return LibraryTab(
        table=table, pick=pick, refresh=refresh, preview=preview, new_name=new_name, rename=rename,
        delete=delete, status=status,
    )  # fmt: skip


def wire(tab: LibraryTab, page: Page, svc: ServicesFn) -> None:
    async def refresh(choice: str, request: gr.Request) -> dict[Any, Any]:
        return await listing(svc, tab, choice, request)

    tab.refresh.click(refresh, page.lang, [tab.table, tab.pick])

    async def preview(ref: str | None, request: gr.Request) -> str | None:
        if not ref:
            return None
        s = svc()
        try:  # the recording, as GET /v1/voices/{id}/prompt serves it: the 'voices' scope
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, client_ip(request), "voices", "voice_prompt"):
                return str(await asyncio.to_thread(s.library.prompt_path, ref))
        except VoiceforgeError:
            return None

    tab.pick.change(preview, tab.pick, tab.preview)

    change = Inputs(ChangeForm, tab, page)

    async def apply(action: str, form: ChangeForm, request: gr.Request) -> dict[Any, Any]:
        lang = lang_code(form.lang)
        new_name = (form.new_name or "").strip()
        ref = form.pick
        if not ref:
            return {tab.status: t("msg.need_voice", lang)}
        if action == "rename" and not new_name:
            return {tab.status: t("msg.need_name", lang)}
        try:
            s = svc()
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, client_ip(request), "voices", f"{action}_voice"):
                if action == "rename":
                    record = await asyncio.to_thread(s.library.rename, ref, new_name)
                    message = t("msg.renamed", lang, name=record.name)
                else:
                    record = await asyncio.to_thread(s.library.get, ref)
                    await asyncio.to_thread(s.library.delete, ref)
                    message = t("msg.deleted", lang, name=record.name)
            log.info("UI %s voice %s", action, record.id)
        except Exception as e:
            return {tab.status: error_message(e, lang, action)}
        return {tab.status: message, **(await listing(svc, tab, form.lang, request))}

    async def rename(values: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
        return await apply("rename", change.read(values), request)

    async def delete(values: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
        return await apply("delete", change.read(values), request)

    tab.rename.click(rename, change.inputs, [tab.status, tab.table, tab.pick])
    tab.delete.click(delete, change.inputs, [tab.status, tab.table, tab.pick])


def wire_save(gen: GenerateTab, tab: LibraryTab, page: Page, svc: ServicesFn) -> None:
    """The generate tab's save button: the prompt into the library, as POST /v1/voices does."""
    save = Inputs(SaveForm, gen, page)

    async def on_save(values: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
        form = save.read(values)
        lang = lang_code(form.lang)
        name = (form.save_name or "").strip()
        if not name:
            return {gen.prompt_status: t("msg.need_name", lang)}
        if not form.prompt:
            return {gen.prompt_status: t("msg.need_prompt", lang)}
        if not form.consent:
            return {gen.prompt_status: t("msg.need_consent", lang)}
        try:  # POST /v1/voices's admission: the 'voices' scope, its rate limit, an audit row
            s = svc()
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, client_ip(request), "voices", "save_voice"):
                work = functools.partial(
                    actions.save_voice,
                    s.speech,
                    name,
                    Path(form.prompt),
                    (form.prompt_text or "").strip() or None,
                    consent_by=principal.id,
                )
                record = await s.pool.run(work, timeout=s.settings.enroll_timeout_s)
        except Exception as e:
            return {gen.prompt_status: error_message(e, lang, "save")}
        log.info("UI saved voice %s (%s)", record.id, record.name)
        saved = t("msg.saved", lang, name=record.name, id=record.id)
        return {gen.prompt_status: saved, **(await listing(svc, tab, form.lang, request))}

    # the voice picker is listed but never changed here: it shows as busy while the prompt is enrolled
    gen.save.click(on_save, save.inputs, [gen.prompt_status, tab.table, tab.pick, gen.voice])


async def listing(svc: ServicesFn, tab: LibraryTab, choice: str, request: gr.Request) -> dict[Any, Any]:
    """The table (names, transcripts) and the picker's choices: what GET /v1/voices lists, to the
    same scope. Empty without the 'voices' scope; unchanged when the library refuses (a rate limit)."""
    s = svc()
    principal = await admission.ui_principal(s, request.cookies)
    records: list[VoiceRecord] = []
    if admission.allows(principal, "voices"):  # without it the tab stays empty (no 403 row per load)
        try:
            async with admission.door(s, principal, client_ip(request), "voices", "library"):
                records = await asyncio.to_thread(s.library.list)
        except VoiceforgeError:  # rate-limited, say: keep what the page shows
            return {tab.table: gr.update(), tab.pick: gr.update()}
    lang = lang_code(choice)
    headers = t("cols", lang).split(",")
    rows = [
        [r.name, r.id, r.language, r.transcript, _learning(r, lang), r.created_at.strftime("%Y-%m-%d %H:%M")]
        for r in records
    ]
    return {
        tab.table: gr.update(value={"headers": headers, "data": rows or [[""] * len(headers)]}),
        tab.pick: gr.update(choices=[(r.name, r.id) for r in records], value=None),
    }


def _learning(record: VoiceRecord, lang: str) -> str:
    """Where learning the voice stands, as GET /v1/voices/{id} says it (service/learning.py)."""
    state = LearnState.of(record)
    if state is None:
        return t("learn.enrolled", lang)
    return t(f"learn.{state.state}", lang, progress=state.progress)
