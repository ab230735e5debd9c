"""Hard negatives from personalized PageRank (PinSage's curriculum negatives).

:class:`PPRHardNegatives` gives, per query item, items whose PPR w.r.t. the query ranks
in a band ``[lo, hi)`` (fractions of the catalogue; ranks 2000–5000 of 2B in the paper):
close enough to the query to be hard, far enough not to be positives.

* ``power``: PPR by power iteration ``x ← α e_q + (1 − α) Pᵀ x`` over the one-round
  metapath transition ``P = Σ_m w_m Π_{r∈m} D_r⁻¹ A_r``, applied through its sparse
  factors (:class:`MetapathTransition`) — never materialised, as the item×item product of
  an item→user→item walk is nearly dense on popular users. The band of every item is
  computed once (:meth:`PPRHardNegatives.band_table`).
* ``montecarlo``: ranks by the visit counts of the sampler's random walks with restart
  from each query, for catalogues too big for the table.

:func:`metapath_transition` materialises ``P`` (inspection, small graphs, tests).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graphrec.graph.store import GraphStore
from graphrec.sampling.walks import RandomWalkSampler, top_t_visits


def _hop_matrices(store: GraphStore, sampler: RandomWalkSampler
                  ) -> list[tuple[float, list[sp.csr_matrix], np.ndarray]]:
    """Per metapath ``m``: ``(w_m, [D_r⁻¹ A_r for r in m], stuck_m)``, the hops as
    row-normalised ``[N_src, N_dst]`` CSR matrices and ``stuck_m`` a float ``[N]`` mask of
    the nodes with no way out of the metapath."""
    out = []
    for path, w in zip(sampler.paths, sampler.weights):
        hops = []
        for step in path:
            indptr, indices, n_start, n_end = step.csr(store)
            deg = np.diff(indptr).astype(np.float64)
            vals = np.repeat(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0), np.diff(indptr))
            hops.append(sp.csr_matrix((vals, indices, indptr), shape=(n_start, n_end)))
        prod_rowsum = np.ones(hops[-1].shape[1])  # row sums of the product, without forming it
        for a in reversed(hops):
            prod_rowsum = a @ prod_rowsum
        out.append((float(w), hops, (prod_rowsum < 0.5).astype(np.float64)))
    return out


def metapath_transition(store: GraphStore, sampler: RandomWalkSampler) -> sp.csr_matrix:
    """``[N, N]`` transition of one walk round: ``P = Σ_m w_m (Π_{r∈m} D_r⁻¹ A_r + S_m)``,
    ``S_m`` the diagonal of the nodes with no way out of metapath ``m`` (they keep that
    metapath's mass on themselves, so ``P`` stays row-stochastic; the sampler's walkers
    instead go back to their seed and record no visit). Rows sum to 1 where every node a
    metapath reaches has a way on (e.g. a relation followed by its reverse).
    Materialised: for inspection and small graphs; PPR applies the factors instead
    (:class:`MetapathTransition`)."""
    n = sampler.num_nodes
    total = sp.csr_matrix((n, n), dtype=np.float64)
    for w, hops, stuck in _hop_matrices(store, sampler):
        m = hops[0]
        for a in hops[1:]:
            m = m @ a
        total = total + w * (m + sp.diags(stuck))
    return total.tocsr()


class MetapathTransition:
    """The transition ``P`` of :func:`metapath_transition` kept as its sparse factors:
    ``transpose_matmul(x) = Pᵀ x`` costs ``O(Σ nnz(A_r) · cols)`` — the item×item product
    of an item→user→item walk is nearly dense on popular users (the 6,000-pin quickstart
    graph: tens of millions of entries), its factors are the edge lists."""

    def __init__(self, store: GraphStore, sampler: RandomWalkSampler):
        # float32 factors: with float32 vectors (band_table) the products stay float32 (2x faster)
        self.parts = [(w, [a.T.tocsr().astype(np.float32) for a in hops], stuck.astype(np.float32))
                      for w, hops, stuck in _hop_matrices(store, sampler)]

    def transpose_matmul(self, x: np.ndarray) -> np.ndarray:
        """``Pᵀ x`` for ``x`` ``[N, cols]`` (same dtype out)."""
        out = np.zeros_like(x)
        for w, hops_t, stuck in self.parts:
            y = x
            for at in hops_t:  # (A_1 A_2)ᵀ x = A_2ᵀ (A_1ᵀ x)
                y = at @ y
            out += w * (y + stuck[:, None] * x)
        return out


class PPRHardNegatives:
    """Hard negatives of query items from a personalized-PageRank rank band.

    Args:
        store: the graph the sampler walks.
        sampler: the metapath walk sampler (defines the item graph, ``N`` items).
        band: ``(lo, hi)`` fractions of the catalogue: candidates are the items ranked
            ``[lo_r, max(lo_r + 1, ⌈hi·N⌉))`` by PPR w.r.t. the query, ``lo_r =
            max(1, ⌊lo·N⌋)`` (rank 0 is the query itself, never its own negative).
        ranks: ``(lo, hi)`` absolute PPR ranks instead of ``band`` (PinSage's 2000–5000:
            a band that stays near the query whatever the catalogue size; clipped to
            ``N``).
        alpha: restart probability of the power-iteration PPR.
        method: ``power`` (power iteration over :class:`MetapathTransition`),
            ``montecarlo`` (ranks by the visit counts of ``mc_walks`` of the sampler's
            walks of ``mc_length`` rounds from the query; their restart probability is the
            sampler's ``restart_prob``, not ``alpha``) or ``auto`` (power up to
            ``power_max_nodes`` items).
        iterations: power-iteration rounds (L1 error ``≤ 2(1 − α)^iterations``).

    Monte-Carlo memory is ``O(Q · mc_walks · mc_length)`` per batch whatever ``N``: the
    visited items are ranked by visit count; a band rank beyond the items a query's walks
    visited is drawn uniformly among the items they did *not* visit (all tied at zero
    visits), never among the visited ones. :meth:`coverage` measures how much of the
    band the walks resolve (training logs it and keeps it in the run summary).
    """

    def __init__(self, store: GraphStore, sampler: RandomWalkSampler, band=(0.1, 0.3), alpha: float = 0.3,
                 method: str = "auto", power_max_nodes: int = 20000, iterations: int = 30, mc_walks: int = 200,
                 mc_length: int = 10, ranks: tuple[int, int] | None = None):
        lo, hi = band
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"hard negative band must satisfy 0 <= lo < hi <= 1, got {band}")
        if ranks is not None and not 1 <= ranks[0] < ranks[1]:
            raise ValueError(f"hard negative ranks must satisfy 1 <= lo < hi, got {ranks}")
        if method not in ("auto", "power", "montecarlo"):
            raise ValueError(f"unknown PPR method {method!r}")
        self.store, self.sampler = store, sampler
        self.num_nodes = sampler.num_nodes
        if self.num_nodes < 2:
            raise ValueError(f"PPR hard negatives need at least 2 {sampler.node_type!r} nodes, got {self.num_nodes}")
        if ranks is not None:
            self.lo = min(int(ranks[0]), self.num_nodes - 1)
            self.hi = max(self.lo + 1, min(int(ranks[1]), self.num_nodes))
        else:
            self.lo = max(1, int(np.floor(lo * self.num_nodes)))  # rank 0 is the query itself
            self.hi = max(self.lo + 1, int(np.ceil(hi * self.num_nodes)))
        self.alpha, self.iterations = alpha, iterations
        self.method = ("power" if self.num_nodes <= power_max_nodes else "montecarlo") if method == "auto" else method
        self.mc_walks, self.mc_length = mc_walks, mc_length
        self._table: np.ndarray | None = None
        self._transition = None

    def __repr__(self) -> str:
        mc = f", {self.mc_walks} walks x {self.mc_length}" if self.method == "montecarlo" else ""
        return (f"{type(self).__name__}(ranks [{self.lo}, {self.hi}) of {self.num_nodes}, alpha={self.alpha}, "
                f"{self.method}{mc})")

    def ppr(self, queries: np.ndarray, dtype=np.float64) -> np.ndarray:
        """PPR vectors ``[Q, N]`` of ``queries`` ``[Q]`` (rows sum to 1) by ``iterations``
        rounds of power iteration ``x ← α e_q + (1 − α) x P`` from ``x = e_q``."""
        if self._transition is None:
            self._transition = MetapathTransition(self.store, self.sampler)
        q = np.asarray(queries, dtype=np.int64)
        e = np.zeros((self.num_nodes, q.shape[0]), dtype=dtype)
        e[q, np.arange(q.shape[0])] = 1.0
        x = e.copy()
        a = dtype(self.alpha)
        for _ in range(self.iterations):
            x = a * e + (1 - a) * self._transition.transpose_matmul(x)
        return x.T

    def ranking(self, queries: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Items ordered by decreasing power-iteration PPR w.r.t. each query, ``[Q, N]``
        int64 (the query first, ties by id)."""
        queries = np.asarray(queries, dtype=np.int64)
        scores = self.ppr(queries, dtype)
        scores[np.arange(queries.shape[0]), queries] = np.inf
        return np.argsort(-scores, axis=1, kind="stable")

    def band_table(self, chunk: int = 512) -> np.ndarray:
        """``[N, hi - lo]`` int32 band candidates of every item (power-iteration PPR in
        float32, ``chunk`` queries at a time; computed once, then kept)."""
        if self._table is None:
            parts = []
            for start in range(0, self.num_nodes, chunk):
                q = np.arange(start, min(self.num_nodes, start + chunk))
                parts.append(self.ranking(q, np.float32)[:, self.lo : self.hi].astype(np.int32))
            self._table = np.concatenate(parts)
        return self._table

    def sample(self, queries: np.ndarray, positives: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``[Q, count]`` int64 hard negatives per query from its band, never the query's
        positive (redrawn within the band; if the band holds nothing else, a uniform item
        other than the positive). Monte-Carlo: a band rank beyond the items the walks
        visited is a uniform item (the unvisited ones are all tied)."""
        queries = np.asarray(queries, dtype=np.int64)
        positives = np.asarray(positives, dtype=np.int64)
        if count == 0:
            return np.zeros((queries.shape[0], 0), dtype=np.int64)
        if self.method == "power":
            cand = self.band_table()[queries]
            width = cand.shape[1]

            def draw(rows, n):
                return cand[rows, rng.integers(0, width, size=n)].astype(np.int64)
        else:
            top, draw_unvisited = self._visited_ranking(queries, rng)

            def draw(rows, n):
                r = rng.integers(self.lo, self.hi, size=n) - 1  # top excludes the query (rank 0)
                got = np.full(n, -1, dtype=np.int64)
                inside = r < top.shape[1]
                got[inside] = top[rows[inside], r[inside]]
                miss = got < 0  # a rank beyond the visited items: one of the unvisited (tied)
                got[miss] = draw_unvisited(rows[miss])
                return got

        q = queries.shape[0]
        rows = np.repeat(np.arange(q), count)
        return self._draw_avoiding(draw, rows, q, count, positives, rng)

    def _visited_ranking(self, queries: np.ndarray, rng: np.random.Generator):
        """Monte-Carlo PPR of ``queries``: ``(top [Q, min(hi, V)]`` visited items by visit
        count (query excluded, ``-1`` padded), ``draw_unvisited(rows) ->`` a uniform item
        each row's walks never reached, the query excluded)."""
        visits = self.sampler.walk(queries, self.mc_walks, self.mc_length, rng)
        top = top_t_visits(visits, min(self.hi, visits.shape[1]), exclude=queries).neighbors
        n = np.int64(self.num_nodes)
        keys = np.arange(queries.shape[0], dtype=np.int64)[:, None] * n + np.where(top >= 0, top, queries[:, None])
        keys = np.unique(np.concatenate([keys.ravel(), np.arange(queries.shape[0]) * n + queries]))  # + the query

        def draw_unvisited(rows: np.ndarray) -> np.ndarray:
            out = rng.integers(0, self.num_nodes, size=rows.shape[0])
            for _ in range(64):  # rejection: the unvisited are most of a large catalogue
                key = rows * n + out
                pos = np.minimum(np.searchsorted(keys, key), keys.shape[0] - 1)
                seen = keys[pos] == key
                if not seen.any():
                    break
                out[seen] = rng.integers(0, self.num_nodes, size=int(seen.sum()))
            return out

        return top, draw_unvisited

    def coverage(self, queries: np.ndarray, rng: np.random.Generator) -> float:
        """Mean fraction of the band's ranks ``[lo, hi)`` that the Monte-Carlo walks of
        ``queries`` resolve (ranks up to the number of distinct items they visit); 1.0
        for power iteration. The rest are drawn among the unvisited items."""
        if self.method == "power":
            return 1.0
        top, _ = self._visited_ranking(np.asarray(queries, dtype=np.int64), rng)
        visited = (top >= 0).sum(1) + 1  # + the query at rank 0
        return float(np.clip((visited - self.lo) / (self.hi - self.lo), 0.0, 1.0).mean())

    def _draw_avoiding(self, draw, rows, q, count, positives, rng) -> np.ndarray:
        """``draw(rows, n)`` reshaped ``[q, count]``, collisions with the positive redrawn."""
        out = draw(rows, rows.shape[0]).reshape(q, count)
        for _ in range(8):  # redraw collisions with the positive
            bad = out == positives[:, None]
            if not bad.any():
                break
            r, c = np.nonzero(bad)
            out[r, c] = draw(r, r.shape[0])
        bad = out == positives[:, None]
        if bad.any():
            r, c = np.nonzero(bad)
            alt = rng.integers(0, self.num_nodes - 1, size=r.shape[0])
            out[r, c] = alt + (alt >= positives[r])
        return out
