"""Stand-in for upstream ``cosyvoice.utils.common``: only ``set_all_random_seed``."""

from __future__ import annotations

import random

import numpy as np

seeds: list[int] = []  # what the adapter asked for, in order, for the tests


def set_all_random_seed(seed: int) -> None:
    """Upstream seeds random, numpy and torch (CPU and CUDA); there is no torch here."""
    seeds.append(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
