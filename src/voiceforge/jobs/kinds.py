"""What each kind of job does when it runs: ``tts`` (one long text), ``batch`` (several texts),
``longform`` (a chapter, sentence by sentence, with subtitles), ``transcription`` (Whisper).

A kind is a function of :class:`Work` that returns the job's result (JSON) or raises. It reports
progress through ``work.report``, which also raises :class:`~voiceforge.jobs.base.JobCancelled`
once a cancel was asked for, so a job stops after the sentence it is on and stores no partial
audio. Outputs are named after the job (``<job id>.<ext>``, ``<job id>-<item>.<ext>``), so a job
that runs again after a crash finds what its earlier attempt already saved instead of making it
twice.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceforge.asr.formats import as_json
from voiceforge.audio.decode import decode
from voiceforge.errors import NotFound, VoiceforgeError
from voiceforge.jobs.base import Job, JobFailed
from voiceforge.jobs.requests import SpeechItem, plan_item
from voiceforge.service.speech import Output, SpeechService
from voiceforge.service.transcribe import screen, transcribe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    """One run of one job, as its kind sees it."""

    job: Job
    report: Callable[[float, str], None]  # (progress 0–1, stage); raises JobCancelled/JobInterrupted
    save: Callable[[dict[str, Any]], None]  # keep a partial result across a restart
    cancel: threading.Event
    input: Callable[[str], Path]  # a file saved at submit (e.g. "audio")


Kind = Callable[[Work], dict[str, Any]]


def registry(speech: SpeechService) -> dict[str, Kind]:
    """The kinds this process can run, bound to its speech service."""
    return {
        "tts": functools.partial(run_tts, speech),
        "batch": functools.partial(run_batch, speech),
        "longform": functools.partial(run_longform, speech),
        "transcription": functools.partial(run_transcription, speech),
    }


def run_tts(speech: SpeechService, work: Work) -> dict[str, Any]:
    item = SpeechItem.model_validate(work.job.params)

    def progress(done: int, total: int) -> None:
        work.report(0.98 * done / total, f"synthesising {done}/{total}")

    output = _speak(speech, work, item, work.job.id, progress)
    return _described(output)


def run_batch(speech: SpeechService, work: Work) -> dict[str, Any]:
    items = [SpeechItem.model_validate(i) for i in work.job.params["items"]]
    n = len(items)
    earlier = {r["index"]: r for r in (work.job.result or {}).get("items", []) if _still_there(speech, r)}
    results: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if i in earlier:
            log.info("[%s] item %d/%d already done in an earlier attempt", work.job.id, i + 1, n)
            results.append(earlier[i])
            continue
        work.report(i / n, f"item {i + 1}/{n}")

        def progress(done: int, total: int, i: int = i) -> None:
            work.report((i + 0.98 * done / total) / n, f"item {i + 1}/{n}: synthesising {done}/{total}")

        try:
            output = _speak(speech, work, item, f"{work.job.id}-{i}", progress)
        except VoiceforgeError as e:  # this item only: the voice was deleted, the engine failed
            log.warning("[%s] item %d/%d failed: %s", work.job.id, i + 1, n, e.message)
            results.append({"index": i, "status": "failed", "error": {"code": e.code, "message": e.message}})
        else:
            results.append({"index": i, "status": "succeeded", **_described(output)})
        work.save(_batch_result(results, n))
    result = _batch_result(results, n)
    if result["failed"] == n:
        first = results[0]["error"]["message"]
        raise JobFailed(f"all {n} items failed; the first: {first}", result=result)
    return result


def run_longform(speech: SpeechService, work: Work) -> dict[str, Any]:
    """A chapter: audio, SRT and VTT named after the job; finished sentences survive a restart."""
    from voiceforge.service.longform import Longform, render

    spec = Longform(**work.job.params)
    return render(speech, work.job.id, spec, report=work.report, cancelled=work.cancel)


def run_transcription(speech: SpeechService, work: Work) -> dict[str, Any]:
    params = work.job.params
    duration = float(params["duration"])
    path = work.input("audio")
    work.report(0.05, "loading the speech recogniser")
    models = speech.models
    # Our decoder, not Whisper's: the same limits as when the job was checked, 16 kHz as it decodes.
    audio = decode(path, max_duration_s=models.settings.max_job_audio_s, rate=16_000)
    diarize = bool(params.get("diarize"))
    work.report(0.1, f"transcribing {duration:.1f} s of audio{' and who spoke when' if diarize else ''}")
    log.info("[%s] transcribing %.1f s of audio", work.job.id, duration)
    transcript = transcribe(
        models,
        audio.samples,
        language=params.get("language"),
        diarize=diarize,
        speakers=params.get("speakers"),
    )
    log.info(
        "[%s] transcribed: %d characters, language %s", work.job.id, len(transcript.text), transcript.language
    )
    flagged = screen(models.words, models.settings.speech_filter, transcript.text, "the recording's speech")
    result = as_json(transcript, verbose=True)
    return {
        "text": transcript.text,
        "language": transcript.language,
        "language_probability": round(transcript.language_probability, 4),
        "duration": round(transcript.duration, 3),
        "segments": [{k: v for k, v in seg.items() if k != "id"} for seg in result["segments"]],
        **({"speakers": transcript.speakers} if transcript.speakers is not None else {}),
        **({"flagged": flagged} if flagged else {}),
    }


def _speak(
    speech: SpeechService,
    work: Work,
    item: SpeechItem,
    task_id: str,
    progress: Callable[[int, int], None],
) -> Output:
    """The output for ``item``: saved by an earlier attempt, cached, or synthesised now."""
    try:
        done = speech.output(task_id)
        if speech.storage.exists(done.name):
            log.info("[%s] output saved by an earlier attempt: %s", task_id, done.name)
            return done
    except NotFound:
        pass
    output, _notes = speech.speak(
        task_id,
        plan_item(speech, item, task_id, resolve=False),
        progress=lambda done, total, _stage: progress(done, total),
        cancelled=work.cancel,
    )
    return output


def _described(output: Output) -> dict[str, Any]:
    return {
        "audio_url": output.url,
        "task_id": output.task_id,
        "duration": output.duration,
        "sample_rate": output.sample_rate,
        "format": output.format,
        "cached": output.cached,
    }


def _batch_result(results: list[dict[str, Any]], n: int) -> dict[str, Any]:
    succeeded = sum(r["status"] == "succeeded" for r in results)
    return {"items": results, "total": n, "succeeded": succeeded, "failed": len(results) - succeeded}


def _still_there(speech: SpeechService, result: dict[str, Any]) -> bool:
    if result.get("status") != "succeeded":
        return False
    name = str(result.get("audio_url", "")).rsplit("/", 1)[-1]
    return bool(name) and speech.storage.exists(name)
