"""The backend tab, for admins only: the live log view and the engine restart.

The log view is a frame that static/ui.js fills from GET /admin/logs/stream; the restart runs the
restarter POST /admin/restart runs, behind the same admission (the 'admin' scope).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from voiceforge.server import admission
from voiceforge.ui.common import Page, ServicesFn, client_ip, error_message, lang_code
from voiceforge.ui.i18n import Texts, t

if TYPE_CHECKING:
    from voiceforge.server.restart import Restarter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendTab:
    tab: gr.Tab  # shown once the page knows the caller has the 'admin' scope
    restart: gr.Button
    restart_status: gr.Markdown
    log_panel: gr.HTML


def build(texts: Texts) -> BackendTab:
    tab = texts.label(gr.Tab(t("tab.backend", "zh"), id="backend", visible=False), "tab.backend")
    with tab:
        with gr.Row(equal_height=True):
            texts.value(gr.Markdown(t("restart.help", "zh")), "restart.help")
            restart = gr.Button(t("restart", "zh"), variant="stop", scale=0, min_width=160)
            texts.value(restart, "restart")
        status = gr.Markdown(elem_id="vf-restart-status")
        panel = gr.HTML(log_panel("zh"), js_on_load=None)
    return BackendTab(tab=tab, restart=restart, restart_status=status, log_panel=panel)


def wire(tab: BackendTab, page: Page, svc: ServicesFn) -> None:
    async def on_restart(choice: str, request: gr.Request) -> AsyncIterator[str]:
        from voiceforge.server.restart import restarter_of

        lang = lang_code(choice)
        s = svc()
        try:
            principal = await admission.ui_principal(s, request.cookies)
            async with admission.door(s, principal, client_ip(request), "admin", "restart"):
                restarter = restarter_of(s)
                task = restarter.start()
        except Exception as e:
            yield error_message(e, lang, "restart")
            return
        log.info("UI restart of the engine workers")
        while not task.done():
            yield t("msg.restart", lang, stage=restarter.current.stage or "…") + _stages(restarter)
            await asyncio.wait({task}, timeout=0.3)
        r = restarter.current
        if r.state == "failed":
            yield t("msg.restart_failed", lang) + (r.error or "") + _stages(restarter)
            return
        seconds = (r.finished_at or 0) - (r.started_at or 0)
        detail = r.stages[-1].detail if r.stages else ""
        yield t("msg.restarted", lang, seconds=seconds, generation=r.generation, detail=detail) + _stages(
            restarter
        )

    tab.restart.click(on_restart, page.lang, tab.restart_status, concurrency_limit=None)


def log_panel(lang: str) -> str:
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


def _stages(restarter: Restarter) -> str:
    return "".join(f"\n- {s.stage}: {s.seconds:.2f} s {s.detail}" for s in restarter.current.stages)
