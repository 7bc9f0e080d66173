"""Learned enrollment: fit Kokoro's own style vector to a prompt speaker by gradient descent.

1. Start from the stock voice whose calibration speech embeds closest to the prompt.
2. Pitch: Adam on the prosody half (dims 128–255) so that the F0 curve Kokoro predicts for a
   training phrase has the prompt's log-F0 mean and spread. Only the text encoder and prosody
   predictor run for this (a fraction of the graph), so it is cheap.
3. Timbre: Adam on the timbre half (dims 0–127) to raise the cosine between the (torch)
   Resemblyzer embedding of the training phrase, spoken by the differentiable Kokoro, and the
   prompt's; a pull towards the stock voices' spread keeps the vector on their manifold.
   Every ``eval_every`` steps the calibration sentences are spoken by the int8 engine and the
   best vector by their SIM is kept; learning stops when it has not improved for ``patience``
   evaluations (early stopping on calibration sentences, never on the bench's).
4. The learned delta is added to every row of the stock pack: a full (510, 256) pack.

No loss uses the transcript, so a wrong one (Whisper base mishears Chinese prompts) cannot
hurt; the training and calibration phrases are fixed per language. Deterministic for the same
prompt: no sampling anywhere, fixed thread count. Runs in a worker thread: ``progress`` is
called after each step and ``cancel`` is checked before each.
"""

from __future__ import annotations

import logging
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
from voiceforge.engines.kokoro.learn.graph import F0_CURVE, KokoroGraph
from voiceforge.engines.kokoro.model import (
    STYLE_DIM,
    KokoroModel,
    SessionConfig,
    bundled_model_bytes,
    bundled_vocab,
    load_vocab,
    load_voice_packs,
)
from voiceforge.errors import Cancelled, InvalidInput
from voiceforge.text.frontend import Frontend
from voiceforge.voices.embedding import SpeakerEncoder, similarity

log = logging.getLogger(__name__)

TIMBRE = slice(0, 128)
PROSODY = slice(128, 256)
# What the differentiable Kokoro speaks during learning (short: each step synthesises it) and
# what early stopping listens to; neither is in bench/*.py's reporting sets.
TRAINING = {"zh": "我们下午三点在图书馆门口见。", "en": "She opened the window and looked outside."}
CALIBRATION = {
    "zh": ("我们明天早上八点在学校门口见面，别迟到了。", "这本书我已经读了三遍，每次都有新的收获。"),
    "en": ("I will call you back as soon as I get home tonight.",
           "The children were laughing loudly in the garden after lunch."),
}  # fmt: skip
_VOICED_HZ = 50.0  # predicted F0 below this is an unvoiced frame


@dataclass(frozen=True)
class LearnConfig:
    # timbre steps at most (each synthesises and back-propagates the training phrase); 16 beat 8
    # on every shared prompt in bench/learned.py (mean held-out SIM 0.794 against 0.769)
    steps: int = 16
    lr: float = 0.03
    pitch_steps: int = 20  # cheaper: text encoder and prosody predictor only
    pitch_lr: float = 0.03
    fit_pitch: bool = True
    manifold: float = 0.01  # weight of the pull towards the stock voices (per-dim z-score²)
    eval_every: int = 4
    patience: int = 2
    threads: int = 2


@dataclass(frozen=True)
class Progress:
    stage: str  # "start", "pitch", "timbre", "done"
    step: int
    total: int
    detail: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LearnedVoice:
    pack: np.ndarray  # (510, 256)
    pitch_pack: np.ndarray  # the stock pack with only the pitch fit (what the timbre fit adds to)
    base_voice: str
    stock_sim: float  # calibration SIM of the base voice
    calibration_sim: float  # of the learned pack
    f0_target_hz: float  # prompt's median-ish F0: exp(mean log F0)
    f0_learned_hz: float  # predicted on the training phrase after the pitch fit
    steps: int
    seconds: float
    history: list[dict[str, float]]


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
        config: LearnConfig | None = None,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> LearnedVoice:
        """A learned style pack for the speaker of ``prompt`` (mono float audio)."""
        config = config or LearnConfig()
        if language not in TRAINING:
            raise InvalidInput(f"learning a voice needs a zh or en prompt, not {language!r}")
        with self._lock:
            torch.set_num_threads(config.threads)
            torch.manual_seed(0)
            return self._learn(prompt, sample_rate, language, config, progress or _quiet, cancel)

    def _learn(
        self,
        prompt: np.ndarray,
        sample_rate: int,
        language: str,
        config: LearnConfig,
        progress: Callable[[Progress], None],
        cancel: threading.Event | None,
    ) -> LearnedVoice:
        started = time.perf_counter()
        target = self.encoder.embed(prompt, sample_rate)
        target_t = torch.from_numpy(target)
        stock = {name: self.calibration_sim(pack, language, target) for name, pack in self.packs.items()}
        base = max(stock, key=lambda n: stock[n])
        log.info("learning from stock voice %s (calibration SIM %.3f)", base, stock[base])
        progress(Progress("start", 0, config.steps, {"stock_sim": stock[base]}))
        tokens = self._tokens(TRAINING[language])
        row = torch.from_numpy(self.packs[base][tokens.shape[1] - 3].copy())
        delta = torch.zeros(STYLE_DIM)

        f0_target = _log_f0(prompt, sample_rate)
        if config.fit_pitch:
            delta = self._fit_pitch(tokens, row, delta, f0_target, config, progress, cancel)
        with torch.no_grad():
            f0_learned = float(torch.exp(_voiced_log_f0(self._f0(tokens, row + delta)).mean()))

        history: list[dict[str, float]] = []
        best_delta, best_sim = delta.clone(), self.calibration_sim(self._pack(base, delta), language, target)
        stale, step = 0, 0
        timbre = delta[TIMBRE].clone().requires_grad_(True)
        optimiser = torch.optim.Adam([timbre], lr=config.lr)
        for step in range(1, config.steps + 1):
            _check(cancel)
            style = torch.cat([row[TIMBRE] + timbre, row[PROSODY] + delta[PROSODY]])
            audio = self.graph.run(tokens, style[None])["audio"].reshape(-1)
            cosine = torch.dot(self.torch_encoder.embed(audio, self.model_rate), target_t)
            pull = ((timbre / self._spread[TIMBRE]) ** 2).mean()
            loss = -cosine + config.manifold * pull
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            entry = {"step": float(step), "train_cos": float(cosine.detach()), "pull": float(pull.detach())}
            if step % config.eval_every == 0 or step == config.steps:
                candidate = torch.cat([timbre.detach(), delta[PROSODY]])
                sim = self.calibration_sim(self._pack(base, candidate), language, target)
                entry["calibration_sim"] = sim
                if sim > best_sim:
                    best_delta, best_sim, stale = candidate.clone(), sim, 0
                else:
                    stale += 1
            history.append(entry)
            progress(Progress("timbre", step, config.steps, entry))
            log.debug("learning step %d: %s", step, entry)
            if stale >= config.patience:
                break
        seconds = time.perf_counter() - started
        log.info("learned voice in %.1f s: calibration SIM %.3f (stock %.3f)", seconds, best_sim, stock[base])
        progress(Progress("done", step, config.steps, {"calibration_sim": best_sim}))
        return LearnedVoice(
            pack=self._pack(base, best_delta),
            pitch_pack=self._pack(base, torch.cat([torch.zeros(128), delta[PROSODY]])),
            base_voice=base,
            stock_sim=stock[base],
            calibration_sim=best_sim,
            f0_target_hz=float(np.exp(f0_target[0])),
            f0_learned_hz=f0_learned,
            steps=step,
            seconds=seconds,
            history=history,
        )

    @property
    def model_rate(self) -> int:
        return 24_000

    def _fit_pitch(
        self,
        tokens: torch.Tensor,
        row: torch.Tensor,
        delta: torch.Tensor,
        f0_target: tuple[float, float],
        config: LearnConfig,
        progress: Callable[[Progress], None],
        cancel: threading.Event | None,
    ) -> torch.Tensor:
        """The prosody half moved so the predicted log-F0 has the prompt's mean and spread."""
        prosody = delta[PROSODY].clone().requires_grad_(True)
        optimiser = torch.optim.Adam([prosody], lr=config.pitch_lr)
        mean, std = f0_target
        for step in range(1, config.pitch_steps + 1):
            _check(cancel)
            style = torch.cat([row[TIMBRE] + delta[TIMBRE], row[PROSODY] + prosody])
            log_f0 = _voiced_log_f0(self._f0(tokens, style))
            loss = (log_f0.mean() - mean) ** 2 + 0.5 * (log_f0.std() - std) ** 2
            loss = loss + config.manifold * ((prosody / self._spread[PROSODY]) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            f0_hz = float(torch.exp(log_f0.detach().mean()))
            progress(Progress("pitch", step, config.pitch_steps, {"f0_hz": f0_hz}))
        return torch.cat([delta[TIMBRE], prosody.detach()])

    def _f0(self, tokens: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.graph.run(tokens, style[None], keep=[F0_CURVE], outputs=False)[F0_CURVE].reshape(-1)

    def _tokens(self, text: str) -> torch.Tensor:
        phonemes = "".join(s.phonemes for s in self.frontend.prepare(text))
        ids = self.model.tokens(phonemes)
        return torch.tensor([[0, *ids, 0]], dtype=torch.int64)

    def _pack(self, base: str, delta: torch.Tensor) -> np.ndarray:
        pack: np.ndarray = (self.packs[base] + delta.detach().numpy()[None, :]).astype(np.float32)
        return pack

    def calibration_sim(self, pack: np.ndarray, language: str, target: np.ndarray) -> float:
        """SIM to ``target`` of the calibration sentences spoken with ``pack`` by the int8 engine."""
        sentences = [s for text in CALIBRATION[language] for s in self.frontend.prepare(text)]
        audio = [self.model.infer(s.phonemes, pack, 1.0) for s in sentences]
        return similarity(target, self.encoder.embed(np.concatenate(audio), self.model_rate))


def _log_f0(prompt: np.ndarray, sample_rate: int) -> tuple[float, float]:
    try:
        s = stats([analyse(prompt.astype(np.float64), sample_rate)])
    except ValueError as e:
        raise InvalidInput("the prompt has too little voiced speech to learn its pitch from") from e
    return s.f0_log_mean, s.f0_log_std


def _voiced_log_f0(f0: torch.Tensor) -> torch.Tensor:
    voiced = f0.detach() > _VOICED_HZ
    return torch.log(f0[voiced] if bool(voiced.any()) else f0.clamp_min(_VOICED_HZ))


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("voice learning was cancelled")


def _quiet(_: Progress) -> None:
    return None
