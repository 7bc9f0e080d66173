"""What the tabs of the web UI share: the page's own components (:class:`Page`), the language a
choice names, the caller's address, the message for an error, and :class:`Inputs`, which turns a
form dataclass into Gradio's inputs and the values Gradio hands a handler back into the form.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import gradio as gr

from voiceforge.errors import VoiceforgeError
from voiceforge.server.state import Services
from voiceforge.ui.i18n import LANGS, Lang, explain, t

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

ServicesFn = Callable[[], Services]  # the app's services, read when a handler runs
F = TypeVar("F", bound="DataclassInstance")


@dataclass(frozen=True)
class Page:
    """The components outside the tabs: the language switch and what this browser keeps."""

    lang: gr.Radio  # "中文" or "English" (:func:`lang_code` turns a choice into zh/en)
    lang_store: gr.BrowserState  # the language last chosen in this browser
    history: gr.BrowserState  # this browser's generations, newest first


class Inputs(Generic[F]):
    """Gradio's inputs for the form dataclass ``F``, and ``F`` back from what a handler receives.

    Each field of ``F`` is the component of the same name on one of ``holders`` (a tab's
    dataclass, the :class:`Page`). The components go to Gradio as a set, so the handler receives one
    dict, component → value, and :meth:`read` rebuilds ``F`` by field name: there is no list whose
    order has to match a signature.
    """

    def __init__(self, form: type[F], *holders: object) -> None:
        self.form = form
        self.components: dict[str, gr.components.Component] = {
            f.name: _component(f.name, holders) for f in dataclasses.fields(form)
        }

    @property
    def inputs(self) -> set[gr.blocks.Block]:
        """What an event listener takes as ``inputs``."""
        return set(self.components.values())

    def read(self, values: Mapping[Any, Any]) -> F:
        """The form from the dict Gradio passes a handler whose inputs were :attr:`inputs`."""
        return self.form(**{name: values[c] for name, c in self.components.items()})


def _component(name: str, holders: tuple[object, ...]) -> gr.components.Component:
    found = [
        c for h in holders if isinstance(c := getattr(h, name, None), gr.components.Component)
    ]  # fmt: skip
    if len(found) != 1:  # a programming error, found when the UI is built
        kinds = ", ".join(type(h).__name__ for h in holders)
        raise LookupError(f"form field {name!r} names {len(found)} components on {kinds}; it must name one")
    return found[0]


def lang_code(choice: str) -> Lang:
    """The language code of the language switch's choice (zh unless it says English)."""
    return LANGS.get(choice, "zh")


def client_ip(request: gr.Request) -> str:
    return request.client.host if request.client else "-"


def error_message(error: Exception, lang: str, task_id: str, lead: str = "msg.error") -> str:
    """The message for a person: a service error's own words, never a traceback."""
    if isinstance(error, VoiceforgeError):
        return explain(error, lang, lead)
    log.error("[%s] UI action failed", task_id, exc_info=error)
    return t("msg.internal", lang, task=task_id)
