"""Generate's work on the engine worker pool: a take rendered whole while its progress drives the
bar, or streamed sentence by sentence to the live player and stored at the end."""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import AsyncIterator

import gradio as gr
import numpy as np
from starlette.concurrency import run_in_threadpool

from voiceforge.audio.encode import encode, parse_format
from voiceforge.server.state import Services
from voiceforge.service.speech import Output
from voiceforge.service.streaming import PoolStream
from voiceforge.ui import actions
from voiceforge.ui.i18n import t


async def rendered(
    svc: Services, form: actions.Form, task_id: str, lang: str, progress: gr.Progress
) -> tuple[Output, list[str]]:
    """``actions.speak`` on the pool; its per-sentence progress drives the bar while it runs.
    Returns the output and the prompt's notes."""
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


async def streamed(
    svc: Services, form: actions.Form, task_id: str, lang: str, progress: gr.Progress
) -> AsyncIterator[tuple[str, str] | Output]:
    """Each sentence to the live player as soon as it is made (static/ui.js plays them back to
    back), as (status line, live player HTML); at the end the whole take is stored in /outputs like
    a rendered one, and the last item is its :class:`Output`."""
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
            yield t("msg.stage", lang, done=done, total=total), live
    finally:
        stream.close()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    yield await run_in_threadpool(svc.speech.store, task_id, samples, rate, form.format)
