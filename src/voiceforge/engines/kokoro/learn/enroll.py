"""A prompt → a learned `VoiceProfile` (version 3): the entry point for learning a voice.

Meant to run in a worker thread beside the service: ``progress`` reports each step, ``cancel``
stops it (raising ``Cancelled``). The fast WORLD path (engines/kokoro/enroll.py) stays what answers a
new prompt at once; a learned profile can replace it when learning is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import soxr

from voiceforge.audio.prompt import PromptAudio
from voiceforge.engines.kokoro.learn.fit import LearnConfig, LearnedVoice, Learner, Progress
from voiceforge.voices.profile import VoiceProfile

_EMPTY = np.zeros(0, np.float32)
_EMPTY_2D = np.zeros((0, 0), np.float32)


def learn_profile(
    learner: Learner,
    prompt: PromptAudio,
    *,
    transcript: str,
    language: str,
    config: LearnConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> VoiceProfile:
    """Learn the prompt speaker's style. ``transcript`` (may be wrong, or empty) only sets the
    speaking-rate target; see fit.py."""
    samples = prompt_samples(learner, prompt)
    learned = learner.learn(
        samples, learner.model_rate, language, transcript=transcript, config=config, progress=progress,
        cancel=cancel,
    )  # fmt: skip
    return learned_profile(learner, learned, prompt, transcript=transcript, language=language)


def prompt_samples(learner: Learner, prompt: PromptAudio) -> np.ndarray:
    """The prompt at the model's rate."""
    samples: np.ndarray = prompt.samples
    if prompt.sample_rate != learner.model_rate:
        samples = soxr.resample(samples, prompt.sample_rate, learner.model_rate).astype(np.float32)
    return samples


def learned_profile(
    learner: Learner, learned: LearnedVoice, prompt: PromptAudio, *, transcript: str, language: str
) -> VoiceProfile:
    """A version-3 profile carrying ``learned.pack``."""
    rate = learner.model_rate
    samples = prompt_samples(learner, prompt)
    return VoiceProfile(
        engine="kokoro",
        base_voice=learned.base_voice,
        style=learned.pack,
        f0_log_mean=float(np.log(learned.f0_target_hz)),
        f0_log_std=0.0,
        source_f0_log_mean=float(np.log(learned.f0_learned_hz)),
        source_f0_log_std=0.0,
        envelope_mean=_EMPTY,
        envelope_std=_EMPTY,
        source_envelope_mean=_EMPTY,
        source_envelope_std=_EMPTY,
        envelope_offset=_EMPTY,
        f0_shift=0.0,
        frame_source=_EMPTY_2D,
        frame_target=_EMPTY_2D,
        frame_weights=_EMPTY_2D,
        frame_neighbours=0,
        embedding=learner.encoder.embed(samples, rate),
        transcript=transcript,
        language=language,
        meta={
            "enroll_s": round(learned.seconds, 2),
            "stock_sim": round(learned.stock_sim, 4),
            "calibration_sim": round(learned.calibration_sim, 4),
            "conversion": "learned style",
            "learn_steps": learned.steps,
            "rate_ratio": round(learned.rate_ratio, 3),
            "prompt_speech_s": round(prompt.speech_s, 2),
            "notes": list(prompt.notes),
        },
        learned=True,
    )
