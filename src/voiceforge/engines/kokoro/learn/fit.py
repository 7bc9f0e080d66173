"""Learned enrollment: fit Kokoro's own style vector to a prompt speaker by gradient descent.

1. Start from the stock voice whose calibration speech embeds closest to the prompt (the stock
   voices' calibration embeddings are cached per learner).
2. Prosody: Adam on the prosody half (dims 128–255) so that the F0 curve Kokoro predicts for the
   training phrases has the prompt's log-F0 mean and spread and, given a transcript, so that
   their total duration (before Round, so it has a gradient) matches the prompt speaker's pace.
   Only the text encoder and prosody predictor run for this, so it is cheap.
3. Pitch check: the int8 engine speaks the calibration sentences; the prosody half is refitted
   by the error of their median F0 (WORLD) against the prompt's, since what the listener hears
   is not the predicted curve. Kept when it raises the calibration score.
4. Timbre: Adam on the timbre half (dims 0–127) to raise the cosine between the (torch)
   Resemblyzer embedding of a training phrase (three per language and the prompt's
   transcript, in turn), spoken by the differentiable Kokoro, and the prompt's; a pull towards
   the stock voices' spread keeps the vector on their manifold; optionally
   (``reconstruction``) a log-mel distance to the prompt on the transcript's steps
   (learn/recon.py). Every ``eval_every`` steps the calibration sentences are spoken by the
   int8 engine and the best vector by calibration score (SIM, less a penalty for a median F0
   more than 5 % off the prompt's) is kept; learning stops when it has not improved for
   ``patience`` evaluations (early stopping on calibration sentences, never on the bench's).
   Then a second pitch check.
5. The learned delta is added to every row of the stock pack: a full (510, 256) pack.

The transcript (Whisper base mishears Chinese prompts) sets the pace target, which counts
durations and is clamped, and is one training phrase among four (a misheard one is still a
sentence of the language, and the loss on it is the same embedding cosine); an empty one turns
both off. The optional reconstruction term weighs itself by alignment confidence.
Deterministic for the same prompt: no sampling anywhere, fixed thread count. Runs in a worker
thread: ``progress`` is called after each step and ``cancel`` is checked before each (and
between the stock voices).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from voiceforge.config import Settings
from voiceforge.engines.kokoro.convert import analyse, stats
from voiceforge.engines.kokoro.dequantize import fp32_model_path
from voiceforge.engines.kokoro.learn.embed import TorchSpeakerEncoder
from voiceforge.engines.kokoro.learn.graph import DURATIONS, F0_CURVE, FRAMES_PER_S, KokoroGraph
from voiceforge.engines.kokoro.learn.recon import Reconstruction
from voiceforge.engines.kokoro.model import (
    STYLE_DIM,
    KokoroModel,
    SessionConfig,
    bundled_model_bytes,
    bundled_vocab,
    load_vocab,
    load_voice_packs,
)
from voiceforge.errors import Cancelled, InvalidInput, VoiceforgeError
from voiceforge.text.frontend import Frontend
from voiceforge.voices.embedding import SpeakerEncoder, similarity

log = logging.getLogger(__name__)

TIMBRE = slice(0, 128)
PROSODY = slice(128, 256)
# What the differentiable Kokoro speaks during learning (short: each step synthesises one, in
# turn) and what early stopping listens to; none is in bench/learned.py's sentence sets.
TRAINING = {
    "zh": ("我们下午三点在图书馆门口见。", "你想喝点什么，茶还是咖啡？", "昨天晚上下了一场很大的雨。"),
    "en": (
        "She opened the window and looked outside.",
        "Would you like some tea or coffee?",
        "It rained very hard last night, didn't it?",
    ),
}
CALIBRATION = {
    "zh": ("我们明天早上八点在学校门口见面，别迟到了。", "这本书我已经读了三遍，每次都有新的收获。"),
    "en": ("I will call you back as soon as I get home tonight.",
           "The children were laughing loudly in the garden after lunch."),
}  # fmt: skip
_VOICED_HZ = 50.0  # predicted F0 below this is an unvoiced frame
# A speaking-rate estimate outside this ratio of the base voice's is more likely a wrong
# transcript (or a prompt full of pauses) than a speaker that fast or slow.
_RATE_LIMITS = (0.75, 1.33)
_PITCH_SLACK = math.log(1.05)  # median F0 this close to the prompt's costs nothing in the score


@dataclass(frozen=True)
class LearnConfig:
    # timbre steps at most (each synthesises and back-propagates a training phrase); on the
    # report set (bench/learned.py) 32 beat 24: mean held-out SIM 0.862 against 0.855, LJ other
    # recordings 0.803 against 0.769; zh stops early either way
    steps: int = 32
    lr: float = 0.03
    pitch_steps: int = 20  # cheaper: text encoder and prosody predictor only
    pitch_lr: float = 0.03
    fit_pitch: bool = True
    manifold: float = 0.01  # weight of the pull towards the stock voices (per-dim z-score²)
    eval_every: int = 4
    patience: int = 2
    threads: int = 2
    # weight of the speaking-rate term of the prosody fit (log total duration of the training
    # phrase against the prompt's pace); 0 turns it off; needs a transcript
    rate: float = 1.0
    # pitch checks after the prosody fit and after the timbre fit: measure the int8 engine's median
    # F0 on the calibration sentences and refit the prosody half by the remaining error (the
    # decoder shifts the heard pitch off the predicted curve); 0 turns them off
    pitch_checks: int = 1
    # calibration score = SIM - pitch × (|log F0 error| - 5 %, when positive): what early stopping
    # and the pitch checks keep the best by; 0 ranks by SIM alone
    pitch: float = 0.5
    phrases: int = 3  # training phrases taken in turn (1: the first only)
    # the prompt's transcript joins the training phrases in turn (its embedding target is then the
    # same words); on LJ (bench/learned.py --set design) held-out SIM 0.824 → 0.844, other
    # recordings 0.763 → 0.783
    own_words: bool = True
    # weight of a log-mel reconstruction of the prompt on its transcript's steps (learn/recon.py);
    # off: its alignment-confidence gate does not work across speakers yet
    reconstruction: float = 0.0


@dataclass(frozen=True)
class Progress:
    """One report of a learning run: ``stage`` is "start", "pitch", "timbre" or "done", in that
    order, except that a pitch check (``pitch_checks``) may add a shorter "pitch" round (its own
    ``step``/``total``) before and after "timbre"; "timbre" may end early (early stopping)."""

    stage: str
    step: int
    total: int
    detail: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LearnedVoice:
    pack: np.ndarray  # (510, 256)
    pitch_pack: np.ndarray  # the stock pack with only the prosody fits (what the timbre fit adds to)
    base_voice: str
    stock_sim: float  # calibration SIM of the base voice
    calibration_sim: float  # of the learned pack
    f0_target_hz: float  # prompt's median-ish F0: exp(mean log F0)
    f0_learned_hz: float  # predicted on the training phrase after the prosody fits
    steps: int
    seconds: float
    history: list[dict[str, float]]
    rate_ratio: float = 1.0  # prompt's pace against the base voice's (1: not matched)


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


class Learner:
    """The models one learning run needs; build once, ``learn`` many prompts (one at a time)."""

    def __init__(
        self,
        graph: KokoroGraph,
        model: KokoroModel,
        packs: dict[str, np.ndarray],
        encoder: SpeakerEncoder,
        torch_encoder: TorchSpeakerEncoder,
    ) -> None:
        self.graph, self.model, self.packs = graph, model, packs
        self.encoder, self.torch_encoder = encoder, torch_encoder
        self.frontend = Frontend()
        rows = np.stack([p[len(p) // 8] for p in packs.values()])  # a mid-length row of each voice
        self._spread = torch.from_numpy(rows.std(axis=0) + 1e-3)
        self._stock: dict[tuple[str, str], np.ndarray] = {}  # (voice, language) → calibration embedding
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings, threads: int = 2) -> Learner:
        """Everything from the bundled (or configured) weights; the fp32 graph is cached on disk."""
        weights = settings.kokoro_model.read_bytes() if settings.kokoro_model else bundled_model_bytes()
        vocab = load_vocab(settings.kokoro_vocab) if settings.kokoro_vocab else bundled_vocab()
        graph = KokoroGraph.load(fp32_model_path(settings.cache_dir, weights))
        model = KokoroModel(weights, vocab, SessionConfig(threads=threads))
        torch_encoder = TorchSpeakerEncoder.load()
        return cls(graph, model, load_voice_packs(settings.kokoro_voices), torch_encoder.numpy, torch_encoder)

    def learn(
        self,
        prompt: np.ndarray,
        sample_rate: int,
        language: str,
        *,
        transcript: str = "",
        config: LearnConfig | None = None,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> LearnedVoice:
        """A learned style pack for the speaker of ``prompt`` (mono float audio).

        ``transcript`` (may be wrong, or empty) only sets the speaking-rate target.
        """
        config = config or LearnConfig()
        if language not in TRAINING:
            raise InvalidInput(f"learning a voice needs a zh or en prompt, not {language!r}")
        with self._lock:
            torch.set_num_threads(config.threads)
            torch.manual_seed(0)
            run = _Run(self, prompt, sample_rate, language, transcript, config, progress or _quiet, cancel)
            return run.learn()

    @property
    def model_rate(self) -> int:
        return 24_000

    def _tokens(self, text: str) -> torch.Tensor:
        phonemes = "".join(s.phonemes for s in self.frontend.prepare(text))
        ids = self.model.tokens(phonemes)
        return torch.tensor([[0, *ids, 0]], dtype=torch.int64)

    def _pack(self, base: str, delta: torch.Tensor) -> np.ndarray:
        pack: np.ndarray = (self.packs[base] + delta.detach().numpy()[None, :]).astype(np.float32)
        return pack

    def calibration_speech(self, pack: np.ndarray, language: str) -> np.ndarray:
        """The calibration sentences spoken with ``pack`` by the int8 engine."""
        sentences = [s for text in CALIBRATION[language] for s in self.frontend.prepare(text)]
        return np.concatenate([self.model.infer(s.phonemes, pack, 1.0) for s in sentences])

    def calibration_sim(self, pack: np.ndarray, language: str, target: np.ndarray) -> float:
        """SIM to ``target`` of the calibration sentences spoken with ``pack`` by the int8 engine."""
        return similarity(
            target, self.encoder.embed(self.calibration_speech(pack, language), self.model_rate)
        )

    def stock_sim(self, voice: str, language: str, target: np.ndarray) -> float:
        """``calibration_sim`` of a stock voice; its speech does not depend on the prompt, so it is cached."""
        key = (voice, language)
        if key not in self._stock:
            speech = self.calibration_speech(self.packs[voice], language)
            self._stock[key] = self.encoder.embed(speech, self.model_rate)
        return similarity(target, self._stock[key])


class _Run:
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


def _quiet(_: Progress) -> None:
    return None
