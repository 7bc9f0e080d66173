"""The UI's forms reach their handlers by field name: each form dataclass goes out as Gradio's
inputs and comes back, through Gradio's own call path, with every field holding the value of the
component of the same name, whatever order Gradio keeps the inputs in.

Blocks are built inside a running event loop, as the app builds them: outside one, Gradio opens
loops of its own for its locks and never closes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from voiceforge.engines.base import VoiceInfo
from voiceforge.ui import generate, library, picker
from voiceforge.ui.app import build
from voiceforge.ui.common import Inputs, Page
from voiceforge.ui.generate import GenerateForm, voice_choices
from voiceforge.ui.i18n import Texts
from voiceforge.voices.library import VoiceRecord


def page_and_tabs() -> tuple[gr.Blocks, Page, generate.GenerateTab, library.LibraryTab]:
    texts = Texts()
    with gr.Blocks() as demo:
        page = Page(
            lang=gr.Radio(["中文", "English"], value="中文"),
            lang_store=gr.BrowserState("zh"),
            history=gr.BrowserState([]),
        )
        with gr.Tabs():
            gen = generate.build(texts)
            lib = library.build(texts)
    return demo, page, gen, lib


async def round_trip(demo: gr.Blocks, inputs: Inputs[Any], button: gr.Button) -> None:
    received: list[Any] = []

    def handler(values: dict[Any, Any]) -> None:
        received.append(inputs.read(values))

    with demo:
        button.click(handler, inputs.inputs, None)
    block_fn = list(demo.fns.values())[-1]
    assert block_fn.inputs_as_dict and set(block_fn.inputs) == inputs.inputs
    # one distinct value per field, handed over in Gradio's order of the inputs (not the form's)
    sent = inputs.form(**{f.name: f"<{f.name}>" for f in dataclasses.fields(inputs.form)})
    value_of = {inputs.components[f.name]: getattr(sent, f.name) for f in dataclasses.fields(sent)}
    await demo.call_function(block_fn, [value_of[c] for c in block_fn.inputs])
    assert received == [sent]


def test_every_form_round_trips_through_its_inputs() -> None:
    async def main() -> None:
        demo, page, gen, lib = page_and_tabs()
        await round_trip(demo, Inputs(GenerateForm, gen, page), gen.generate)
        await round_trip(demo, Inputs(picker.PickForm, gen, page), gen.generate)
        await round_trip(demo, Inputs(library.SaveForm, gen, page), gen.save)
        await round_trip(demo, Inputs(library.ChangeForm, lib, page), lib.rename)

    asyncio.run(main())


@dataclasses.dataclass(frozen=True)
class Stray:
    text: str
    nowhere: str


@dataclasses.dataclass(frozen=True)
class Ambiguous:
    status: str  # the generate and the library tab both have one


def test_a_field_without_exactly_one_component_fails_when_the_ui_is_built() -> None:
    async def main() -> None:
        _demo, page, gen, lib = page_and_tabs()
        with pytest.raises(LookupError, match="'nowhere' names 0 components"):
            Inputs(Stray, gen, page)
        with pytest.raises(LookupError, match="'status' names 2 components"):
            Inputs(Ambiguous, gen, lib, page)

    asyncio.run(main())


def test_the_built_ui_hands_generate_the_whole_form() -> None:
    async def main() -> gr.Blocks:
        return build(lambda: pytest.fail("building the UI reads no services"))

    demo = asyncio.run(main())
    fn = next(f for f in demo.fns.values() if f.name == "on_generate")
    assert fn.inputs_as_dict and len(fn.inputs) == len(dataclasses.fields(GenerateForm))


def test_the_generate_form_reads_each_field_for_its_mode() -> None:
    base = GenerateForm(
        lang="English", engine="", mode="preset", text="  hello  ", voice="", prompt="/tmp/p.wav",
        prompt_text=" words ", instruct=" happily ", seed=None, speed=1.25, format="mp3", stream=False,
        history=None,
    )  # fmt: skip
    preset = base.request()
    assert (preset.text, preset.voice, preset.prompt, preset.instruct) == ("hello", None, None, None)
    assert (preset.seed, preset.speed, preset.format, preset.engine) == (1, 1.25, "mp3", None)
    assert preset.prompt_text == "words"
    instruct = dataclasses.replace(base, mode="instruct", seed=7.0, engine="kokoro").request()
    assert (instruct.prompt, instruct.instruct) == (Path("/tmp/p.wav"), "happily")
    assert (instruct.seed, instruct.engine) == (7, "kokoro")


def test_voice_choices_per_mode() -> None:
    now = datetime.now(UTC)
    saved = [VoiceRecord("voice_1", "Ann", "en", "hi", True, "kokoro", now, now, "wav", "d", {})]
    stock = [
        VoiceInfo("af_heart", "en", "female", display_name="Heart (English, female)", default_for=("en",)),
        VoiceInfo("zf_xiaobei", "zh", "female", default_for=("zh", "*")),
    ]
    default = ("默认（按文本语言：en: Heart (English, female); zh: zf_xiaobei）", "")
    assert voice_choices("preset", stock, saved) == [
        default, ("Heart (English, female)", "af_heart"), ("zf_xiaobei", "zf_xiaobei")
    ]  # fmt: skip
    assert voice_choices("preset", stock, saved, "en")[0][0].startswith("Default (by the text's language")
    assert voice_choices("zero_shot", stock, saved) == [("—", ""), ("Ann (en)", "voice_1")]
    assert voice_choices("instruct", stock, saved)[-1] == ("Ann (en)", "voice_1")
    assert len(voice_choices("instruct", stock, saved)) == 4
