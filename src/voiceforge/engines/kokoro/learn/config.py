"""What a learning run is told and what it reports: the options (``LearnConfig``), progress
reports, the result, and the fixed phrases it speaks (engines/kokoro/learn/fit.py explains the
stages)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
