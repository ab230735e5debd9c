"""Vectorised metapath random walks with restart on the graph store's CSR.

A **metapath** is a sequence of relation types that leaves a node type and comes back
to it, e.g. ``pin -saved_by-> user -saves-> pin`` or ``pin -in_board-> board -has_pin->
pin``; a relation stored in one direction only is walked backwards as ``~src:name:dst``
(:class:`Step`; e.g. ``~entity:film.film.actor:entity`` from an actor to their films).
A walk from a seed runs ``walk_length`` **rounds**; each round

1. with probability ``restart_prob`` first jumps back to the seed (Pixie / PinSage);
2. picks one metapath (by the configured weights, independently per walker and round);
3. follows it hop by hop, each hop to a uniformly random neighbour in that relation;
4. records the node it lands on as one **visit** (a node of the seed type).

A walker that reaches a node without a neighbour in the next relation is sent back to
its seed and its visit of that round is ``-1`` (not counted).

Every hop of every walker is done at once with array gathers (no per-walk Python):
``cur = indices[indptr[cur] + ⌊b·deg[cur] / 2³²⌋]`` with ``b`` 32 uniform random bits
(Lemire's multiply-shift: an offset in ``[0, deg)`` for any degree below 2³², from
integer arithmetic only). Walkers are processed in chunks of ``chunk`` so the
temporaries stay in cache. A hop is one **walk step** (the unit of
``benchmarks/random_walk.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from graphrec.graph.store import EdgeType, GraphStore, parse_edge_type


@dataclass(frozen=True)
class _Hop:
    indptr: np.ndarray  # int64 [N_src + 1]
    indices: np.ndarray  # int32/int64 [E]
    degree: np.ndarray  # uint32 [N_src] (one gather per hop instead of two)
    has_dead_ends: bool  # some source node has no edge

    @classmethod
    def of(cls, indptr: np.ndarray, indices: np.ndarray) -> _Hop:
        degree = np.diff(indptr)
        if degree.size and int(degree.max()) >= 1 << 32:
            raise ValueError("random walks: a node has 2**32 or more edges in one relation")
        return cls(indptr, indices, degree.astype(np.uint32), bool(degree.size and degree.min() == 0))


class Step(NamedTuple):
    """One hop of a metapath: the relation ``edge_type`` walked from its source to its
    destination, or with ``reverse`` from its destination back to its source (written
    ``~src:name:dst``: e.g. ``~entity:film.film.actor:entity`` goes from an actor to the
    films it acted in, for a knowledge graph that stores only one direction)."""

    edge_type: EdgeType
    reverse: bool = False

    @classmethod
    def parse(cls, step) -> Step:
        if isinstance(step, Step):
            return step
        if isinstance(step, str):
            text = step.strip()
            rev = text.startswith("~")
            return cls(parse_edge_type(text[1:] if rev else text), rev)
        return cls(tuple(step), False)

    @property
    def start(self) -> str:
        return self.edge_type[2] if self.reverse else self.edge_type[0]

    @property
    def end(self) -> str:
        return self.edge_type[0] if self.reverse else self.edge_type[2]

    def __str__(self) -> str:
        return ("~" if self.reverse else "") + ":".join(self.edge_type)

    def csr(self, store: GraphStore) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``(indptr [n_start + 1], indices, n_start, n_end)`` of the hop."""
        rel = store.relation(self.edge_type)
        if self.reverse:
            return np.asarray(rel.rev_indptr), np.asarray(rel.rev_indices), rel.num_dst, rel.num_src
        return np.asarray(rel.indptr), np.asarray(rel.indices), rel.num_src, rel.num_dst


class RandomWalkSampler:
    """Metapath random walks with restart over a :class:`~graphrec.graph.GraphStore`.

    Args:
        store: the graph.
        metapaths: ``[(relations, weight), ...]``; each ``relations`` is a list of
            :class:`Step` (or strings, ``~`` walking a relation backwards) or
            relation types (``"pin:saved_by:user"`` or tuples) forming a closed path on
            one node type, the same for all metapaths.
        restart_prob: probability of jumping back to the seed before each round.
        chunk: walkers advanced together (memory/cache trade-off only).
    """

    def __init__(self, store: GraphStore, metapaths: Sequence[tuple[Sequence, float]], restart_prob: float = 0.0,
                 chunk: int = 1 << 16):
        if not metapaths:
            raise ValueError("at least one metapath is needed")
        if not 0.0 <= restart_prob < 1.0:
            raise ValueError(f"restart_prob must be in [0, 1), got {restart_prob}")
        self.paths: list[list[Step]] = []
        weights = []
        node_type = None
        for rels, w in metapaths:
            path = [Step.parse(r) for r in rels]
            if not path:
                raise ValueError("a metapath needs at least one relation")
            for a, b in zip(path, path[1:]):
                if a.end != b.start:
                    raise ValueError(f"metapath {_fmt(path)}: {a} ends at {a.end!r} but {b} starts at {b.start!r}")
            start, end = path[0].start, path[-1].end
            if start != end:
                raise ValueError(f"metapath {_fmt(path)} must return to {start!r}, ends at {end!r}")
            if node_type is None:
                node_type = start
            elif start != node_type:
                raise ValueError(f"all metapaths must start at {node_type!r}; {_fmt(path)} starts at {start!r}")
            if w < 0:
                raise ValueError(f"metapath {_fmt(path)}: weight must be >= 0")
            for st in path:
                store.relation(st.edge_type)  # KeyError naming the relation if unknown
            self.paths.append(path)
            weights.append(float(w))
        total = sum(weights)
        if total <= 0:
            raise ValueError("metapath weights sum to 0")
        self.weights = np.asarray(weights) / total
        self.node_type: str = node_type
        self.num_nodes = store.num_nodes(node_type)
        self.restart_prob = float(restart_prob)
        self.chunk = int(chunk)
        self._hops: dict[Step, _Hop] = {}
        for path in self.paths:
            for st in path:
                if st not in self._hops:
                    indptr, indices, _, _ = st.csr(store)
                    self._hops[st] = _Hop.of(np.asarray(indptr, dtype=np.int64), indices)

    def __repr__(self) -> str:
        paths = ", ".join(f"{_fmt(p)}×{w:.2f}" for p, w in zip(self.paths, self.weights))
        return f"{type(self).__name__}({paths}; restart_prob={self.restart_prob})"

    @property
    def steps_per_round(self) -> float:
        """Expected hops per round (the mean metapath length under the weights)."""
        return float(sum(w * len(p) for p, w in zip(self.paths, self.weights)))

    def walk(self, seeds: np.ndarray, num_walks: int, walk_length: int, rng: np.random.Generator) -> np.ndarray:
        """Visits ``[len(seeds), num_walks * walk_length]`` (int64 local ids of the seed
        type, ``-1`` where a walker hit a dead end); row ``i`` holds every visit of the
        walks from ``seeds[i]``, walk by walk."""
        seeds = np.asarray(seeds, dtype=np.int64)
        if seeds.size and (seeds.min() < 0 or seeds.max() >= self.num_nodes):
            raise IndexError(f"seed ids must be in [0, {self.num_nodes}) for node type {self.node_type!r}")
        n = seeds.shape[0] * num_walks
        out = np.empty((n, walk_length), dtype=np.int64)
        starts = np.repeat(seeds, num_walks)
        for lo in range(0, n, self.chunk):
            hi = min(n, lo + self.chunk)
            self._walk_chunk(starts[lo:hi], out[lo:hi], rng)
        return out.reshape(seeds.shape[0], num_walks * walk_length)

    def _walk_chunk(self, start: np.ndarray, out: np.ndarray, rng: np.random.Generator) -> None:
        n, length = out.shape
        cur = start.copy()
        multi = len(self.paths) > 1
        for step in range(length):
            if self.restart_prob > 0 and step > 0:
                back = _random_bits(rng, n) < np.uint32(min(self.restart_prob * 2.0**32, 2.0**32 - 1))
                cur[back] = start[back]
            if multi:
                choice = rng.choice(len(self.paths), size=n, p=self.weights)
                for k, path in enumerate(self.paths):
                    sel = np.flatnonzero(choice == k)
                    if sel.size:
                        cur[sel] = self._follow(path, cur[sel], rng)
            else:
                cur = self._follow(self.paths[0], cur, rng)
            dead = cur < 0
            out[:, step] = cur
            if dead.any():
                cur[dead] = start[dead]

    def _follow(self, path: list[Step], cur: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One round: hop along every relation of ``path``; ``-1`` marks dead walkers."""
        alive = None  # None: every walker alive so far
        for et in path:
            hop = self._hops[et]
            if hop.indices.shape[0] == 0:
                return np.full(cur.shape[0], -1, dtype=np.int64)
            if alive is not None:
                cur = np.where(alive, cur, 0)
            deg = hop.degree[cur]
            off = _random_bits(rng, cur.shape[0]).astype(np.uint64)
            off *= deg
            off >>= np.uint64(32)  # ⌊b · deg / 2³²⌋ in [0, deg)
            off = off.view(np.int64)
            off += hop.indptr[cur]
            if hop.has_dead_ends:
                ok = deg > 0
                alive = ok if alive is None else (alive & ok)
                # a node without edges may sit at the end of the CSR (first == E): clamp, it is dead anyway
                np.minimum(off, hop.indices.shape[0] - 1, out=off)
            cur = hop.indices[off].astype(np.int64, copy=False)
        return cur if alive is None else np.where(alive, cur, -1)


def _random_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniform uint32 values: the generator's raw 64-bit output cut in halves (half
    the generator calls of ``rng.random(n, dtype=np.float32)``, and no float rounding)."""
    return rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]


def _fmt(path: Sequence[Step]) -> str:
    return " / ".join(map(str, path))


@dataclass
class ImportanceNeighborhoods:
    """Top-T importance neighbourhoods of nodes of one type.

    ``neighbors``: int64 ``[S, T]`` local ids, ``-1`` padding where a node had fewer
    than ``T`` distinct visited nodes; ``weights``: float32 ``[S, T]``, the L1-normalised
    visit counts of the kept neighbours (each row sums to 1, or is all 0 for a node
    whose walks visited nothing), 0 on padding. Rows are ordered by decreasing weight
    (ties by increasing id).
    """

    neighbors: np.ndarray
    weights: np.ndarray

    @property
    def num_neighbors(self) -> int:
        return int(self.neighbors.shape[1])

    def __len__(self) -> int:
        return int(self.neighbors.shape[0])

    def save(self, directory) -> None:
        """``neighbors.npy`` and ``weights.npy`` in ``directory`` (each written atomically)."""
        from pathlib import Path

        from graphrec.io import write_npy

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, arr in (("neighbors", self.neighbors), ("weights", self.weights)):
            write_npy(d / f"{name}.npy", np.asarray(arr))

    @classmethod
    def load(cls, directory, mmap: bool = True) -> ImportanceNeighborhoods:
        """The neighbourhoods :meth:`save` wrote to ``directory`` (memory-mapped, read-only, with ``mmap``)."""
        from pathlib import Path

        d = Path(directory)
        mode = "r" if mmap else None
        return cls(np.load(d / "neighbors.npy", mmap_mode=mode), np.load(d / "weights.npy", mmap_mode=mode))


#: Visits per block of rows in :func:`top_t_visits`: its temporaries (a few int64 copies
#: of the block) stay in cache and are reused instead of page-faulted in afresh (ML-100K,
#: 4,096 rows of 200 visits: 7 ms in blocks of 512 rows against 19 ms in one piece).
TOP_T_BLOCK_VISITS = 1 << 17


def top_t_visits(visits: np.ndarray, top_t: int, exclude: np.ndarray | None = None) -> ImportanceNeighborhoods:
    """Top-``top_t`` most visited nodes per row of ``visits`` (``[S, V]`` int ids
    ``< 2³¹ − 1``, ``-1`` ignored), with their L1-normalised counts as weights
    (an :class:`ImportanceNeighborhoods` of ``S`` rows and ``top_t`` columns).

    ``exclude[i]`` (e.g. the seed itself) is never a neighbour of row ``i``. A row sort
    of the ``[S, V]`` array (SIMD for int32); then, on the flattened rows, the run ends
    (a value differs from the next one, or a row ends) and each run's length as the gap
    to the previous run end — every row's last column is a run end, so the gap never
    reaches into the previous row; a packed key ``count << 32 | (2³¹ − 1 − node)`` per
    run (larger count first, then smaller id: deterministic ties) scattered back to its
    run end in an ``[S, V]`` array of zeros, a linear row-wise ``np.partition`` for the
    ``T`` largest keys and a sort of those ``T`` only.
    """
    visits = np.asarray(visits)
    s, v = visits.shape
    neighbors = np.full((s, top_t), -1, dtype=np.int64)
    weights = np.zeros((s, top_t), dtype=np.float32)
    if s == 0 or v == 0 or top_t == 0:
        return ImportanceNeighborhoods(neighbors, weights)
    if int(visits.max()) >= (1 << 31) - 1:
        raise ValueError("top_t_visits: node ids must be < 2**31 - 1")
    rows = max(1, TOP_T_BLOCK_VISITS // v)
    for lo in range(0, s, rows):
        hi = min(s, lo + rows)
        _top_t_block(visits[lo:hi], top_t, None if exclude is None else np.asarray(exclude)[lo:hi],
                     neighbors[lo:hi], weights[lo:hi])
    return ImportanceNeighborhoods(neighbors, weights)


def _top_t_block(visits: np.ndarray, top_t: int, exclude: np.ndarray | None, neighbors: np.ndarray,
                 weights: np.ndarray) -> None:
    """:func:`top_t_visits` of one block of rows, written into ``neighbors``/``weights``."""
    s, v = visits.shape
    vis = visits.astype(np.int32)  # a copy: sorted in place below
    if exclude is not None:
        vis[vis == np.asarray(exclude, dtype=np.int32)[:, None]] = -1
    vis.sort(axis=1)
    flat = vis.ravel()
    end = np.empty(flat.shape[0], dtype=bool)
    np.not_equal(flat[1:], flat[:-1], out=end[:-1])
    end[v - 1 :: v] = True  # every row's last column (the array's last included)
    ends = np.flatnonzero(end)
    run_key = np.empty_like(ends)  # the run's length (the gap to the previous run end), then its key
    run_key[0] = ends[0] + 1
    np.subtract(ends[1:], ends[:-1], out=run_key[1:])
    node = flat[ends]
    run_key <<= 32
    run_key |= np.int64((1 << 31) - 1) - node
    run_key[node < 0] = 0  # the run of -1 (dead ends, excluded) gets no key
    key = np.zeros(s * v, dtype=np.int64)  # 0 everywhere but run ends (valid keys are >= 2**32)
    key[ends] = run_key
    key = key.reshape(s, v)
    k = min(top_t, v)
    if k < v:
        key = np.partition(key, v - k, axis=1)[:, v - k :]
    key.sort(axis=1)
    key = key[:, ::-1]  # largest first
    valid = key > 0
    nb = np.where(valid, np.int64((1 << 31) - 1) - (key & 0xFFFFFFFF), -1)
    cnt = np.where(valid, key >> 32, 0).astype(np.float64)
    total = cnt.sum(1, keepdims=True)
    w = np.divide(cnt, total, out=np.zeros_like(cnt), where=total > 0)
    neighbors[:, :k] = nb
    weights[:, :k] = w.astype(np.float32)


def importance_neighbors(sampler: RandomWalkSampler, seeds: np.ndarray, top_t: int, num_walks: int,
                         walk_length: int, rng: np.random.Generator, chunk_seeds: int = 4096,
                         exclude_self: bool = True) -> ImportanceNeighborhoods:
    """PinSage importance neighbourhoods of ``seeds``: walk ``num_walks`` walks of
    ``walk_length`` rounds from every seed, keep the ``top_t`` most visited nodes (the
    seed itself excluded) with their L1-normalised visit counts. Memory is bounded by
    ``chunk_seeds`` seeds at a time."""
    seeds = np.asarray(seeds, dtype=np.int64)
    parts_n, parts_w = [], []
    for lo in range(0, seeds.shape[0], chunk_seeds):
        sd = seeds[lo : lo + chunk_seeds]
        visits = sampler.walk(sd, num_walks, walk_length, rng)
        nb = top_t_visits(visits, top_t, exclude=sd if exclude_self else None)
        parts_n.append(nb.neighbors)
        parts_w.append(nb.weights)
    if not parts_n:
        return ImportanceNeighborhoods(np.full((0, top_t), -1, np.int64), np.zeros((0, top_t), np.float32))
    return ImportanceNeighborhoods(np.concatenate(parts_n), np.concatenate(parts_w))
