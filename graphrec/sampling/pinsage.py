"""PinSage training data: co-engagement positives, PPR hard negatives and
producer-consumer minibatches.

* :class:`CoEngagement` / :func:`co_engagement_pairs`: ``(query, positive)`` item pairs
  engaged by the same user close in time (within ``window`` consecutive interactions
  and ``max_gap`` seconds): all of them, or a fresh sample of partners per interaction
  each epoch.
* :class:`PPRHardNegatives`: per query, items whose personalized PageRank w.r.t. the
  query ranks in a band ``[lo, hi)`` (fractions of the catalogue) — the paper's
  curriculum hard negatives (ranks 2000–5000 of 2B there). Exact PPR by power iteration
  over the metapath transition matrix for catalogues up to ``power_max_nodes``, Monte-Carlo
  visit counts of random walks with restart above.
* :class:`PinSageBatches`: an ``IterableDataset`` whose workers build whole minibatches —
  positives, shared and hard negatives, the re-indexed K-layer neighbourhood subgraph and
  the layer-0 features — so a ``torch.utils.data.DataLoader`` with workers prepares the
  next batches while the model trains on the current one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from graphrec.graph.csr import expand_indptr
from graphrec.graph.store import GraphStore
from graphrec.sampling.blocks import Block, compact_blocks
from graphrec.sampling.features import NodeFeatures, NodeFeatureTable
from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, importance_neighbors, top_t_visits


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


def _hop_matrices(store: GraphStore, sampler: RandomWalkSampler):
    """Per metapath: ``(w_m, [D_r⁻¹ A_r for r in m], stuck_m)`` (``stuck``: float mask of
    the nodes with no way out of the metapath)."""
    out = []
    for path, w in zip(sampler.paths, sampler.weights):
        hops = []
        for et in path:
            rel = store.relation(et)
            indptr = np.asarray(rel.indptr)
            deg = np.diff(indptr).astype(np.float64)
            vals = np.repeat(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0), np.diff(indptr))
            hops.append(sp.csr_matrix((vals, np.asarray(rel.indices), indptr), shape=(rel.num_src, rel.num_dst)))
        prod_rowsum = np.ones(hops[-1].shape[1])  # row sums of the product, without forming it
        for a in reversed(hops):
            prod_rowsum = a @ prod_rowsum
        out.append((float(w), hops, (prod_rowsum < 0.5).astype(np.float64)))
    return out


def metapath_transition(store: GraphStore, sampler: RandomWalkSampler) -> sp.csr_matrix:
    """Row-stochastic ``[N, N]`` transition of one walk round: ``Σ_m w_m Π_{r∈m} D_r⁻¹ A_r``
    (nodes without a way out of a metapath keep their mass on themselves, as the walk
    restarts there). Materialised: for inspection and small graphs; PPR applies the
    factors instead (:class:`MetapathTransition`)."""
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
        sampler: the metapath walk sampler (defines the item graph).
        band: ``(lo, hi)`` fractions of the catalogue: candidates are the items ranked
            ``[⌊lo·N⌋, ⌈hi·N⌉)`` by PPR w.r.t. the query (rank 0 = the query itself).
        alpha: restart probability of the PPR.
        method: ``power`` (exact, power iteration), ``montecarlo`` (visit counts of
            ``mc_walks`` walks with restart of ``mc_length`` rounds) or ``auto`` (power up
            to ``power_max_nodes`` items).
    """

    def __init__(self, store: GraphStore, sampler: RandomWalkSampler, band=(0.1, 0.3), alpha: float = 0.3,
                 method: str = "auto", power_max_nodes: int = 20000, iterations: int = 30, mc_walks: int = 200,
                 mc_length: int = 10, seed: int = 0):
        lo, hi = band
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"hard negative band must satisfy 0 <= lo < hi <= 1, got {band}")
        if method not in ("auto", "power", "montecarlo"):
            raise ValueError(f"unknown PPR method {method!r}")
        self.store, self.sampler = store, sampler
        self.num_nodes = sampler.num_nodes
        self.lo = int(np.floor(lo * self.num_nodes))
        self.hi = max(self.lo + 1, int(np.ceil(hi * self.num_nodes)))
        self.alpha, self.iterations = alpha, iterations
        self.method = ("power" if self.num_nodes <= power_max_nodes else "montecarlo") if method == "auto" else method
        self.mc_walks, self.mc_length = mc_walks, mc_length
        self.seed = seed
        self._table: np.ndarray | None = None
        self._transition = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ranks [{self.lo}, {self.hi}) of {self.num_nodes}, alpha={self.alpha}, {self.method})"

    def ppr(self, queries: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Exact PPR vectors ``[Q, N]`` (rows sum to 1) by power iteration:
        ``x ← α e_q + (1 − α) x P``."""
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
        """Items ordered by decreasing exact PPR w.r.t. each query, ``[Q, N]`` int64 (the
        query first, ties by id)."""
        queries = np.asarray(queries, dtype=np.int64)
        scores = self.ppr(queries, dtype)
        scores[np.arange(queries.shape[0]), queries] = np.inf
        return np.argsort(-scores, axis=1, kind="stable")

    def band_table(self, chunk: int = 512) -> np.ndarray:
        """``[N, hi - lo]`` band candidates of every item (exact PPR, computed once)."""
        if self._table is None:
            parts = []
            for start in range(0, self.num_nodes, chunk):
                q = np.arange(start, min(self.num_nodes, start + chunk))
                parts.append(self.ranking(q, np.float32)[:, self.lo : self.hi].astype(np.int32))
            self._table = np.concatenate(parts)
        return self._table

    def sample(self, queries: np.ndarray, positives: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``[Q, count]`` hard negatives per query from its band, never the query's
        positive (redrawn within the band; if the band holds nothing else, a uniform item
        other than the positive)."""
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
            # Monte-Carlo PPR: visited items ranked by visit count; a band rank beyond
            # the visited ones falls among the unvisited (all tied): a uniform item
            visits = self.sampler.walk(queries, self.mc_walks, self.mc_length, rng)
            top = top_t_visits(visits, self.hi, exclude=queries).neighbors

            def draw(rows, n):
                r = rng.integers(self.lo, self.hi, size=n) - 1  # rank 0 is the query itself
                got = top[rows, np.maximum(r, 0)]
                miss = (r < 0) | (got < 0)
                got[miss] = rng.integers(0, self.num_nodes, size=int(miss.sum()))
                return got

        q = queries.shape[0]
        rows = np.repeat(np.arange(q), count)
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


@dataclass
class PinSageBatch:
    """One minibatch: layer-0 ``nodes`` and their ``feats``; ``blocks`` (K layers);
    positions in the layer-K targets of ``query``, ``pos`` ``[B]``, ``shared`` ``[S]``
    and ``hard`` ``[B, H]``; ``shared_mask`` ``[B, S]`` (False where a shared negative is
    the query or its positive). With user→item pairs: ``users`` ``[U]`` (user ids),
    ``user_pos`` ``[U]`` (positions of their items in the targets) and ``user_mask``
    ``[U, S]`` (False where a shared negative is the user's positive)."""

    nodes: Tensor
    feats: NodeFeatures | None
    blocks: list[Block]
    query: Tensor
    pos: Tensor
    shared: Tensor
    hard: Tensor
    shared_mask: Tensor
    users: Tensor | None = None
    user_pos: Tensor | None = None
    user_mask: Tensor | None = None

    @property
    def num_targets(self) -> int:
        return int(self.blocks[-1].num_dst) if self.blocks else int(self.nodes.shape[0])


def table_neighborhood(table: ImportanceNeighborhoods) -> Callable:
    def lookup(nodes: np.ndarray):
        return np.asarray(table.neighbors[nodes]), np.asarray(table.weights[nodes])

    return lookup


def walk_neighborhood(sampler: RandomWalkSampler, top_t: int, num_walks: int, walk_length: int,
                      rng: np.random.Generator) -> Callable:
    """``neighborhood(nodes)`` that walks afresh (PinSage's per-minibatch neighbourhoods)."""

    def walk(nodes: np.ndarray):
        nb = importance_neighbors(sampler, nodes, top_t, num_walks, walk_length, rng)
        return nb.neighbors, nb.weights

    return walk


def build_batch(query: np.ndarray, pos: np.ndarray, shared: np.ndarray, hard: np.ndarray, num_layers: int,
                neighborhood: Callable, features: NodeFeatureTable | None, users: np.ndarray | None = None,
                user_items: np.ndarray | None = None) -> PinSageBatch:
    """Assemble a :class:`PinSageBatch` (the re-indexed subgraph of every item the
    loss touches: queries, positives, negatives and the items of ``(users, user_items)``
    pairs)."""
    extra = np.zeros(0, np.int64) if user_items is None else np.asarray(user_items, dtype=np.int64)
    allv = np.concatenate([query, pos, shared, hard.ravel(), extra])
    targets, inv = np.unique(allv, return_inverse=True)
    b, s, nh = query.shape[0], shared.shape[0], hard.size
    qi, pi, si = inv[:b], inv[b : 2 * b], inv[2 * b : 2 * b + s]
    hi = inv[2 * b + s : 2 * b + s + nh].reshape(hard.shape)
    nodes, blocks = compact_blocks(targets, num_layers, neighborhood)
    feats = features.gather(nodes[0]) if features is not None else None
    mask = (shared[None, :] != query[:, None]) & (shared[None, :] != pos[:, None])
    batch = PinSageBatch(torch.from_numpy(nodes[0]), feats, blocks, torch.from_numpy(qi), torch.from_numpy(pi),
                         torch.from_numpy(si), torch.from_numpy(hi), torch.from_numpy(mask))
    if user_items is not None:
        batch.users = torch.from_numpy(np.asarray(users, dtype=np.int64))
        batch.user_pos = torch.from_numpy(inv[2 * b + s + nh :])
        batch.user_mask = torch.from_numpy(shared[None, :] != extra[:, None])
    return batch


class PinSageBatches(IterableDataset):
    """One epoch of PinSage minibatches, built by whichever DataLoader worker owns them.

    The ``(query, pos)`` pairs are shuffled with ``(seed, epoch)``; this training
    worker (``rank`` of ``world``) takes every ``world``-th batch, and DataLoader worker
    ``w`` of ``W`` builds every ``W``-th of those (the loader returns them in order, so
    results do not depend on ``W``). Every batch draws its negatives from
    ``(seed, epoch, batch index)``, and so does a per-batch walk neighbourhood.
    ``interactions = (users, items)`` (``[E]`` each) adds user→item pairs: an epoch's
    permutation of them is dealt out evenly over the batches.
    """

    def __init__(self, query: np.ndarray, pos: np.ndarray, num_items: int, batch_size: int, num_layers: int,
                 neighborhood: ImportanceNeighborhoods | Callable[[np.random.Generator], Callable],
                 features: NodeFeatureTable | None, shared_negatives: int, hard: PPRHardNegatives | None,
                 hard_per_query: int, epoch: int, seed: int = 0, rank: int = 0, world: int = 1,
                 interactions: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        self.interactions = interactions
        self.query, self.pos = query, pos
        self.num_items, self.batch_size, self.num_layers = num_items, batch_size, num_layers
        self.neighborhood, self.features = neighborhood, features
        self.shared_negatives, self.hard, self.hard_per_query = shared_negatives, hard, hard_per_query
        self.epoch, self.seed, self.rank, self.world = epoch, seed, rank, world
        n_batches = -(-query.shape[0] // batch_size)
        self.num_batches = n_batches // world  # equal step counts on every training worker
        self._global_batches = self.num_batches * world

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        perm = np.random.default_rng([self.seed, self.epoch, 17]).permutation(self.query.shape[0])
        if self.interactions is not None:
            n_inter = self.interactions[0].shape[0]
            uperm = np.random.default_rng([self.seed, self.epoch, 19]).permutation(n_inter)
            per_batch = -(-n_inter // max(self._global_batches, 1))
        for j in range(wid, self.num_batches, nw):
            g = j * self.world + self.rank  # global batch index
            sel = perm[g * self.batch_size : (g + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, self.epoch, g, 29])
            q, p = self.query[sel], self.pos[sel]
            shared = rng.integers(0, self.num_items, size=self.shared_negatives)
            if self.hard is not None and self.hard_per_query > 0:
                hard = self.hard.sample(q, p, self.hard_per_query, rng)
            else:
                hard = np.zeros((q.shape[0], 0), dtype=np.int64)
            if isinstance(self.neighborhood, ImportanceNeighborhoods):
                nbh = table_neighborhood(self.neighborhood)
            else:
                nbh = self.neighborhood(rng)
            users = user_items = None
            if self.interactions is not None:
                usel = uperm[g * per_batch : (g + 1) * per_batch]
                users, user_items = self.interactions[0][usel], self.interactions[1][usel]
            yield build_batch(q, p, shared, hard, self.num_layers, nbh, self.features, users, user_items)


def collate_identity(batch):
    """DataLoader collate for datasets that yield whole batches."""
    return batch
