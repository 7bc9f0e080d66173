"""The history tab: this browser's last generations (kept in the browser, never on the server),
each with its text, mode, length, a player and a download link."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from voiceforge.service.speech import Output
from voiceforge.ui.common import Page, lang_code
from voiceforge.ui.i18n import MODES, Texts, t

HISTORY = 30  # entries kept per browser

Entry = dict[str, Any]  # time, mode, text, url, duration: what the browser stores


@dataclass(frozen=True)
class HistoryTab:
    html: gr.HTML
    clear: gr.Button


def build(texts: Texts) -> HistoryTab:
    with texts.label(gr.Tab(t("tab.history", "zh"), id="history"), "tab.history"):
        return HistoryTab(
            html=gr.HTML(t("history.empty", "zh"), elem_id="vf-history"),
            clear=texts.value(gr.Button(t("history.clear", "zh"), size="sm"), "history.clear"),
        )


def wire(tab: HistoryTab, page: Page) -> None:
    def clear(choice: str) -> tuple[list[Entry], str]:
        return [], history_html([], lang_code(choice))

    tab.clear.click(clear, page.lang, [page.history, tab.html])


def remember(entries: list[Entry] | None, mode: str, text: str, output: Output) -> list[Entry]:
    """``entries`` with a new take first, the oldest dropped past :data:`HISTORY`."""
    entry = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "mode": mode,
        "text": text[:200],
        "url": output.url,
        "duration": output.duration,
    }
    return [entry, *(entries or [])][:HISTORY]


def history_html(entries: list[Entry], lang: str) -> str:
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
