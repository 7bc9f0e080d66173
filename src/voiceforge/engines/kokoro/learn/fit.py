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
import threading
from collections.abc import Callable

import numpy as np
import torch

from voiceforge.config import Settings
from voiceforge.engines.kokoro.dequantize import fp32_model_path
from voiceforge.engines.kokoro.learn.config import (
    CALIBRATION,
    PROSODY,
    TIMBRE,
    TRAINING,
    LearnConfig,
    LearnedVoice,
    Progress,
)
from voiceforge.engines.kokoro.learn.embed import TorchSpeakerEncoder
from voiceforge.engines.kokoro.learn.graph import KokoroGraph
from voiceforge.engines.kokoro.learn.run import Run
from voiceforge.engines.kokoro.model import (
    KokoroModel,
    SessionConfig,
    bundled_model_bytes,
    bundled_vocab,
    load_vocab,
    load_voice_packs,
)
from voiceforge.errors import InvalidInput
from voiceforge.text.frontend import Frontend
from voiceforge.voices.embedding import SpeakerEncoder, similarity

__all__ = [
    "CALIBRATION",
    "PROSODY",
    "TIMBRE",
    "TRAINING",
    "LearnConfig",
    "LearnedVoice",
    "Learner",
    "Progress",
]

log = logging.getLogger(__name__)


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
            run = Run(self, prompt, sample_rate, language, transcript, config, progress or _quiet, cancel)
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


def _quiet(_: Progress) -> None:
    return None
