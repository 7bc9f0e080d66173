"""Dynamic time warping: which frame of one utterance matches which frame of another.

Enrollment synthesises the prompt's own transcript with the base voice and aligns it to the
prompt, giving pairs of frames that say the same sound in the two voices. Written here rather
than taken from a library because the ones that have it (librosa, fastdtw, dtw-python) bring
numba or C builds for one 30-line function; this one is vectorised along each row.
"""

from __future__ import annotations

import numpy as np


def dtw_path(a: np.ndarray, b: np.ndarray, *, open_end: bool = False) -> np.ndarray:
    """The cheapest monotonic path from (0, 0) to (n-1, m-1) between ``a`` (n, d) and ``b`` (m, d)
    under Euclidean frame distance, as an (k, 2) array of index pairs.

    ``open_end``: ``a`` says only the start of what ``b`` says, so the path ends at the frame of
    ``b`` where ``a`` ends (the cheapest per step), not at ``b``'s last frame."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("cannot align an empty sequence")
    a2 = (a * a).sum(1)[:, None]
    b2 = (b * b).sum(1)[None, :]
    cost = np.sqrt(np.maximum(a2 + b2 - 2 * a @ b.T, 0.0))
    n, m = cost.shape
    total = np.empty((n, m))
    total[0] = np.cumsum(cost[0])
    for i in range(1, n):
        prev = total[i - 1]
        # Into (i, j) from above or diagonally; then along the row, where total[i, j] =
        # S[j] + min over k <= j of (entry[k] - S[k-1]) with S the row's running cost.
        entry = np.minimum(prev, np.concatenate(([np.inf], prev[:-1])))
        running = np.cumsum(cost[i])
        before = np.concatenate(([0.0], running[:-1]))
        total[i] = running + np.minimum.accumulate(entry - before)
    end = int(np.argmin(total[-1] / (n + np.arange(m)))) if open_end else m - 1
    return _backtrack(total, end)


def _backtrack(total: np.ndarray, end: int) -> np.ndarray:
    i, j = total.shape[0] - 1, end
    path = [(i, j)]
    while i or j:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            step = int(np.argmin((total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])))
            i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
        path.append((i, j))
    return np.array(path[::-1], dtype=np.int64)
