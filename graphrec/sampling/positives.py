"""Co-engagement positives: ``(query, positive)`` item pairs engaged by the same user
close in time — within ``window`` consecutive interactions of that user and ``max_gap``
seconds — PinSage's training pairs.

:class:`CoEngagement` sorts the user→item interactions once per user by time and gives
all pairs (:meth:`~CoEngagement.all_pairs`, ``O(window · E)``) or a fresh sample of
partners per interaction each epoch (:meth:`~CoEngagement.sample`, ``O(E)`` whatever
the window); :func:`co_engagement_pairs` is the all-pairs shortcut.
"""

from __future__ import annotations

import numpy as np

from graphrec.graph.csr import expand_indptr


class CoEngagement:
    """Users' interaction timelines and the co-engagement pairs they give: items engaged
    by the same user at most ``window`` interactions and ``max_gap`` seconds apart.

    The user→item CSR ``(indptr, indices)`` with per-edge ``timestamps`` (CSR order;
    ``None``: CSR order is time order) is sorted once per user by time (``[E]`` arrays
    ``user``, ``item``, ``time``)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, timestamps: np.ndarray | None, window: int = 1,
                 max_gap: float | None = None):
        if window < 1:
            raise ValueError("window must be >= 1")
        src = expand_indptr(np.asarray(indptr))
        items = np.asarray(indices).astype(np.int64)
        n = items.shape[0]
        if timestamps is None:
            order = np.arange(n)
            ts = np.arange(n, dtype=np.float64)
        else:
            ts = np.asarray(timestamps, dtype=np.float64)
            order = np.lexsort((np.arange(n), ts, src))
        self.user, self.item, self.time = src[order], items[order], ts[order]
        self.window, self.max_gap = window, max_gap

    @property
    def num_interactions(self) -> int:
        return int(self.item.shape[0])

    def _ok(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Positions ``a``, ``b`` (in range) form a pair: same user, different items, close in time."""
        ok = (self.user[a] == self.user[b]) & (self.item[a] != self.item[b])
        if self.max_gap is not None:
            ok &= np.abs(self.time[a] - self.time[b]) <= self.max_gap
        return ok

    def all_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every pair, both directions, int64 ``(query [P], pos [P])``."""
        n = self.num_interactions
        qs, ps = [], []
        for d in range(1, min(self.window, n - 1) + 1):
            a = np.arange(n - d)
            ok = self._ok(a, a + d)
            x, y = self.item[:-d][ok], self.item[d:][ok]
            qs += [x, y]
            ps += [y, x]
        if not qs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(qs), np.concatenate(ps)

    def sample(self, rng: np.random.Generator, per_interaction: int = 1, queries: np.ndarray | None = None,
               tries: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """``per_interaction`` pairs per interaction (``queries``: positions to use, default
        all): the interaction's item is the query, its positive the item of a uniformly
        drawn interaction ``d ∈ [1, window]`` steps earlier or later in the same user's
        timeline (redrawn up to ``tries`` times where that falls outside the timeline or
        the gap; interactions without any partner give no pair). ``O(E)`` whatever the
        window, so a wide window costs no more per epoch than a narrow one."""
        n = self.num_interactions
        pos_q = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
        pos_q = np.repeat(pos_q, per_interaction)
        partner = np.full(pos_q.shape[0], -1, dtype=np.int64)
        todo = np.arange(pos_q.shape[0])
        for _ in range(tries):
            if todo.size == 0:
                break
            d = rng.integers(1, self.window + 1, size=todo.size) * rng.choice(np.array([-1, 1]), size=todo.size)
            b = pos_q[todo] + d
            inside = (b >= 0) & (b < n)
            ok = np.zeros(todo.size, dtype=bool)
            ok[inside] = self._ok(pos_q[todo][inside], b[inside])
            partner[todo[ok]] = b[ok]
            todo = todo[~ok]
        got = partner >= 0
        return self.item[pos_q[got]], self.item[partner[got]]


def co_engagement_pairs(indptr: np.ndarray, indices: np.ndarray, timestamps: np.ndarray | None, window: int = 1,
                        max_gap: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every co-engagement pair of :class:`CoEngagement`, both directions, int64
    ``(query [P], pos [P])``. Pairs of an item with itself are dropped."""
    return CoEngagement(indptr, indices, timestamps, window, max_gap).all_pairs()
