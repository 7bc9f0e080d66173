"""One learning run, stage by stage: prosody fit, pitch checks, timbre fit with early stopping
(the order and the losses are described in engines/kokoro/learn/fit.py)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from voiceforge.engines.kokoro.convert import analyse, stats
from voiceforge.engines.kokoro.learn.config import (
    PROSODY,
    TIMBRE,
    TRAINING,
    LearnConfig,
    LearnedVoice,
    Progress,
)
from voiceforge.engines.kokoro.learn.graph import DURATIONS, F0_CURVE, FRAMES_PER_S
from voiceforge.engines.kokoro.learn.recon import Reconstruction
from voiceforge.engines.kokoro.model import (
    STYLE_DIM,
)
from voiceforge.errors import Cancelled, InvalidInput, VoiceforgeError
from voiceforge.voices.embedding import similarity

if TYPE_CHECKING:
    from voiceforge.engines.kokoro.learn.fit import Learner

log = logging.getLogger(__name__)

_VOICED_HZ = 50.0  # predicted F0 below this is an unvoiced frame
# A speaking-rate estimate outside this ratio of the base voice's is more likely a wrong
# transcript (or a prompt full of pauses) than a speaker that fast or slow.
_RATE_LIMITS = (0.75, 1.33)
_PITCH_SLACK = math.log(1.05)  # median F0 this close to the prompt's costs nothing in the score


@dataclass(frozen=True)
class _Judged:
    """A candidate delta on the calibration sentences (int8 engine)."""

    sim: float
    pitch_error: float  # log(median F0 of the speech / the prompt's)
    score: float


@dataclass(frozen=True)
class _Targets:
    """What the prosody fit aims at on each training phrase."""

    f0_log_mean: float
    f0_log_std: float
    log_frames: tuple[float, ...] | None  # log total duration per phrase; None: rate not matched


class Run:
    """One learning run: the state the stages share."""

    def __init__(
        self,
        learner: Learner,
        prompt: np.ndarray,
        sample_rate: int,
        language: str,
        transcript: str,
        config: LearnConfig,
        progress: Callable[[Progress], None],
        cancel: threading.Event | None,
    ) -> None:
        self.learner, self.language, self.config = learner, language, config
        self.progress, self.cancel = progress, cancel
        self.prompt, self.sample_rate, self.transcript = prompt, sample_rate, transcript

    def learn(self) -> LearnedVoice:
        started = time.perf_counter()
        learner, config, language = self.learner, self.config, self.language
        self.target = target = learner.encoder.embed(self.prompt, self.sample_rate)
        self.prompt_f0 = _median_f0(self.prompt, self.sample_rate)
        stock = {}
        for name in learner.packs:
            _check(self.cancel)
            stock[name] = learner.stock_sim(name, language, target)
        self.base = base = max(stock, key=lambda n: stock[n])
        log.info("learning from stock voice %s (calibration SIM %.3f)", base, stock[base])
        self.progress(Progress("start", 0, config.steps, {"stock_sim": stock[base]}))
        phrases = TRAINING[language][: max(1, config.phrases)]
        self.tokens = [learner._tokens(text) for text in phrases]
        self.rows = [torch.from_numpy(learner.packs[base][t.shape[1] - 3].copy()) for t in self.tokens]
        delta = torch.zeros(STYLE_DIM)

        f0_mean, f0_std = _log_f0(self.prompt, self.sample_rate)
        self.said = self._transcript_tokens()
        rate_ratio = self._rate_ratio() if config.rate > 0 and self.said is not None else None
        log_frames = None
        if rate_ratio is not None:
            with torch.no_grad():
                base_frames = [float(self._prosody(i, delta)[1].sum()) for i in range(len(self.tokens))]
            log_frames = tuple(math.log(f * rate_ratio) for f in base_frames)
        targets = _Targets(f0_mean, f0_std, log_frames)
        history: list[dict[str, float]] = []
        if config.fit_pitch:
            delta = self._fit_prosody(delta, targets, config.pitch_steps)
        judged = self._judge(delta)
        if config.fit_pitch:
            for _ in range(config.pitch_checks):
                delta, judged = self._check_pitch(delta, judged, targets, history)

        best_delta, judged, step = self._fit_timbre(delta, judged, history)

        for _ in range(config.pitch_checks if config.fit_pitch else 0):
            best_delta, judged = self._check_pitch(best_delta, judged, targets, history)
        best_sim = judged.sim

        with torch.no_grad():
            f0_learned = float(torch.exp(_voiced_log_f0(self._prosody(0, best_delta)[0]).mean()))
        seconds = time.perf_counter() - started
        log.info("learned voice in %.1f s: calibration SIM %.3f (stock %.3f)", seconds, best_sim, stock[base])
        self.progress(Progress("done", step, config.steps, {"calibration_sim": best_sim}))
        return LearnedVoice(
            pack=learner._pack(base, best_delta),
            pitch_pack=learner._pack(base, torch.cat([torch.zeros(128), best_delta[PROSODY]])),
            base_voice=base,
            stock_sim=stock[base],
            calibration_sim=best_sim,
            f0_target_hz=float(np.exp(f0_mean)),
            f0_learned_hz=f0_learned,
            steps=step,
            seconds=seconds,
            history=history,
            rate_ratio=rate_ratio or 1.0,
        )

    def _judge(self, delta: torch.Tensor) -> _Judged:
        learner = self.learner
        speech = learner.calibration_speech(learner._pack(self.base, delta), self.language)
        sim = similarity(self.target, learner.encoder.embed(speech, learner.model_rate))
        error = math.log(_median_f0(speech, learner.model_rate) / self.prompt_f0)
        return _Judged(sim, error, sim - self.config.pitch * max(0.0, abs(error) - _PITCH_SLACK))

    def _fit_timbre(
        self, delta: torch.Tensor, judged: _Judged, history: list[dict[str, float]]
    ) -> tuple[torch.Tensor, _Judged, int]:
        """Adam on the timbre half towards the prompt's embedding; the best delta by calibration score."""
        learner, config, target = self.learner, self.config, self.target
        best_delta, best = delta.clone(), judged
        stale, step = 0, 0
        timbre = delta[TIMBRE].clone().requires_grad_(True)
        optimiser = torch.optim.Adam([timbre], lr=config.lr)
        target_t = torch.from_numpy(target)
        phrases = list(zip(self.tokens, self.rows, strict=True))
        recon = None
        if self.said is not None and (config.own_words or config.reconstruction > 0):
            phrases.append(self.said)
            if config.reconstruction > 0:
                recon = Reconstruction.of(self.prompt, self.sample_rate)
        for step in range(1, config.steps + 1):
            _check(self.cancel)
            k = (step - 1) % len(phrases)
            tokens, row = phrases[k]
            style = torch.cat([row[TIMBRE] + timbre, row[PROSODY] + delta[PROSODY]])
            audio = learner.graph.run(tokens, style[None])["audio"].reshape(-1)
            cosine = torch.dot(learner.torch_encoder.embed(audio, learner.model_rate), target_t)
            pull = ((timbre / learner._spread[TIMBRE]) ** 2).mean()
            loss = -cosine + config.manifold * pull
            if recon is not None and k == len(self.tokens):
                loss = loss + config.reconstruction * recon.loss(audio)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            entry = {"step": float(step), "train_cos": float(cosine.detach()), "pull": float(pull.detach())}
            if recon is not None and k == len(self.tokens):
                entry["alignment_confidence"] = recon.confidence
            if step % config.eval_every == 0 or step == config.steps:
                candidate = torch.cat([timbre.detach(), delta[PROSODY]])
                now = self._judge(candidate)
                entry.update(calibration_sim=now.sim, pitch_error=now.pitch_error)
                if now.score > best.score:
                    best_delta, best, stale = candidate.clone(), now, 0
                else:
                    stale += 1
            history.append(entry)
            self.progress(Progress("timbre", step, config.steps, entry))
            log.debug("learning step %d: %s", step, entry)
            if stale >= config.patience:
                break
        return best_delta, best, step

    def _prosody(self, k: int, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted F0 curve (Hz) and token durations (frames) of training phrase ``k``."""
        row = self.rows[k]
        style = torch.cat([row[TIMBRE] + delta[TIMBRE], row[PROSODY] + delta[PROSODY]])
        out = self.learner.graph.run(self.tokens[k], style[None], keep=[F0_CURVE, DURATIONS], outputs=False)
        return out[F0_CURVE].reshape(-1), out[DURATIONS].reshape(-1)

    def _fit_prosody(
        self, delta: torch.Tensor, targets: _Targets, steps: int, lr: float | None = None
    ) -> torch.Tensor:
        """The prosody half moved so the predicted log-F0 has the target mean and spread and,
        with a rate target, the training phrases last as long as the prompt speaker would say them."""
        prosody = delta[PROSODY].clone().requires_grad_(True)
        optimiser = torch.optim.Adam([prosody], lr=lr or self.config.pitch_lr)
        spread = self.learner._spread[PROSODY]
        for step in range(1, steps + 1):
            _check(self.cancel)
            k = (step - 1) % len(self.tokens)
            f0, durations = self._prosody(k, torch.cat([delta[TIMBRE], prosody]))
            log_f0 = _voiced_log_f0(f0)
            loss = (log_f0.mean() - targets.f0_log_mean) ** 2 + 0.5 * (log_f0.std() - targets.f0_log_std) ** 2
            detail = {"f0_hz": float(torch.exp(log_f0.detach().mean()))}
            if targets.log_frames is not None:
                rate_error = torch.log(durations.sum()) - targets.log_frames[k]
                loss = loss + self.config.rate * rate_error**2
                detail["rate_error"] = float(rate_error.detach())
            loss = loss + self.config.manifold * ((prosody / spread) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            self.progress(Progress("pitch", step, steps, detail))
        return torch.cat([delta[TIMBRE], prosody.detach()])

    def _check_pitch(
        self, delta: torch.Tensor, judged: _Judged, targets: _Targets, history: list[dict[str, float]]
    ) -> tuple[torch.Tensor, _Judged]:
        """Refit the prosody half by the measured F0 error of the int8 engine's speech (``judged``);
        the refit is kept if it raises the calibration score."""
        if abs(judged.pitch_error) <= _PITCH_SLACK:  # costs nothing in the score: nothing to gain
            return delta, judged
        with torch.no_grad():
            now = float(_voiced_log_f0(self._prosody(0, delta)[0]).mean())
        shifted = _Targets(now - judged.pitch_error, targets.f0_log_std, targets.log_frames)
        # Adam's first steps move every dim by about lr whatever the gradient: scale it to the error
        lr = self.config.pitch_lr * min(1.0, abs(judged.pitch_error) / 0.2)
        candidate = self._fit_prosody(delta, shifted, self.config.pitch_steps // 2, lr)
        after = self._judge(candidate)
        history.append(
            {
                "pitch_check": judged.pitch_error,
                "calibration_sim": after.sim,
                "pitch_error": after.pitch_error,
            }
        )
        log.info(
            "pitch check: F0 %+.1f %% → %+.1f %%, calibration SIM %.3f → %.3f",
            100 * judged.pitch_error, 100 * after.pitch_error, judged.sim, after.sim,
        )  # fmt: skip
        return (candidate, after) if after.score > judged.score else (delta, judged)

    def _transcript_tokens(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Tokens of the transcript and the base pack's row for them (None without a usable one)."""
        if not self.transcript.strip():
            return None
        try:
            tokens = self.learner._tokens(self.transcript)
        except VoiceforgeError as e:  # text the front end cannot phonemise: nothing to match
            log.info("the transcript is not used: %s", e)
            return None
        if tokens.shape[1] < 4 or tokens.shape[1] > self.learner.packs[self.base].shape[0]:
            return None
        return tokens, torch.from_numpy(self.learner.packs[self.base][tokens.shape[1] - 3].copy())

    def _rate_ratio(self) -> float | None:
        """The prompt speaker's pace against the base voice's on the transcript.

        Counts only durations, so a transcript with a few misheard characters of the same length
        (Whisper base on the zh prompt) gives the same figure as the right one; a far-off estimate
        is clamped to _RATE_LIMITS.
        """
        assert self.said is not None
        tokens, row = self.said
        with torch.no_grad():
            out = self.learner.graph.run(tokens, row[None], keep=[DURATIONS], outputs=False)
        frames = float(out[DURATIONS].reshape(-1)[1:-1].sum())
        spoken = _spoken_s(self.prompt, self.sample_rate)
        if frames <= 0 or spoken <= 0:
            return None
        ratio = spoken / (frames / FRAMES_PER_S)
        log.info("prompt pace %.2f× the base voice's", ratio)
        return min(_RATE_LIMITS[1], max(_RATE_LIMITS[0], ratio))


def _log_f0(prompt: np.ndarray, sample_rate: int) -> tuple[float, float]:
    try:
        s = stats([analyse(prompt.astype(np.float64), sample_rate)])
    except ValueError as e:
        raise InvalidInput("the prompt has too little voiced speech to learn its pitch from") from e
    return s.f0_log_mean, s.f0_log_std


def _median_f0(audio: np.ndarray, sample_rate: int) -> float:
    f0 = analyse(audio.astype(np.float64), sample_rate).f0
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if len(voiced) else 1.0


def _spoken_s(audio: np.ndarray, sample_rate: int) -> float:
    """Seconds from the first to the last 20 ms frame within 35 dB of the loudest."""
    hop = sample_rate // 50
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop).astype(np.float64)
    if len(frames) == 0:
        return 0.0
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - 35.0)
    return float((loud[-1] - loud[0] + 1) / 50)


def _voiced_log_f0(f0: torch.Tensor) -> torch.Tensor:
    voiced = f0.detach() > _VOICED_HZ
    return torch.log(f0[voiced] if bool(voiced.any()) else f0.clamp_min(_VOICED_HZ))


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("voice learning was cancelled")
