"""PinSage minibatches built by DataLoader workers.

:class:`PinSageBatches` is an ``IterableDataset`` whose workers build whole
minibatches (:func:`build_batch`): the ``(query, positive)`` pairs, shared and hard
negatives, the re-indexed ``K``-layer neighbourhood subgraph of every item the loss
touches (:func:`~graphrec.sampling.blocks.compact_blocks`) and its layer-0 features —
so a ``torch.utils.data.DataLoader`` with workers prepares the next batches while the
model trains on the current one (``batch_size=None, collate_fn=collate_identity``).
Neighbourhoods come from a fixed :class:`~graphrec.sampling.walks.ImportanceNeighborhoods`
table (:func:`table_neighborhood`) or are walked afresh per batch
(:func:`walk_neighborhood`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from graphrec.sampling.blocks import Block, compact_blocks
from graphrec.sampling.features import NodeFeatures, NodeFeatureTable
from graphrec.sampling.ppr import PPRHardNegatives
from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, importance_neighbors


@dataclass
class PinSageBatch:
    """One minibatch: layer-0 ``nodes`` (int64 ``[N_0]`` item ids; the first
    :attr:`num_targets` are the layer-K targets, every item the loss touches) and their
    ``feats`` (``None`` without a feature table); ``blocks`` (``K`` layers, see
    :func:`~graphrec.sampling.blocks.compact_blocks`); int64 positions in the targets of
    ``query``, ``pos`` ``[B]``, ``shared`` ``[S]`` and ``hard`` ``[B, H]``; bool
    ``shared_mask`` ``[B, S]`` (False where a shared negative is the query or its
    positive). With user→item pairs: ``users`` ``[U]`` (user ids), ``user_pos`` ``[U]``
    (positions of their items in the targets) and bool ``user_mask`` ``[U, S]`` (False
    where a shared negative is the user's positive). ``id_rows``: the ID-table rows the
    model reads for ``nodes`` (``None``: the nodes themselves), ``-1`` for items the
    batch presents as cold (see :class:`PinSageBatches`)."""

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
    id_rows: Tensor | None = None  # [N_0] ID-table rows of ``nodes``, -1 where hidden (cold simulation)

    @property
    def num_targets(self) -> int:
        """Items whose embeddings the loss reads (the last block's destinations)."""
        return int(self.blocks[-1].num_dst) if self.blocks else int(self.nodes.shape[0])


def table_neighborhood(table: ImportanceNeighborhoods) -> Callable:
    """``neighborhood(nodes) -> (neighbors [n, T], weights [n, T])`` read from a fixed
    table (computed once before training)."""

    def lookup(nodes: np.ndarray):
        return np.asarray(table.neighbors[nodes]), np.asarray(table.weights[nodes])

    return lookup


def walk_neighborhood(sampler: RandomWalkSampler, top_t: int, num_walks: int, walk_length: int,
                      rng: np.random.Generator) -> Callable:
    """``neighborhood(nodes) -> (neighbors [n, top_t], weights [n, top_t])`` that walks
    afresh from ``nodes`` with ``rng`` (PinSage's per-minibatch neighbourhoods,
    :func:`~graphrec.sampling.walks.importance_neighbors`)."""

    def walk(nodes: np.ndarray):
        nb = importance_neighbors(sampler, nodes, top_t, num_walks, walk_length, rng)
        return nb.neighbors, nb.weights

    return walk


def cold_neighborhood(neighborhood: Callable, side: ImportanceNeighborhoods, cold: np.ndarray) -> Callable:
    """``neighborhood`` except for the items with ``cold[v]`` (bool ``[N]``), whose
    neighbours are read from ``side`` (a table of the same width ``T``) instead."""
    side_lookup = table_neighborhood(side)

    def lookup(nodes: np.ndarray):
        nbr, w = neighborhood(nodes)
        c = cold[nodes]
        if c.any():
            nbr, w = np.array(nbr), np.array(w)
            nbr[c], w[c] = side_lookup(nodes[c])
        return nbr, w

    return lookup


def build_batch(query: np.ndarray, pos: np.ndarray, shared: np.ndarray, hard: np.ndarray, num_layers: int,
                neighborhood: Callable, features: NodeFeatureTable | None, users: np.ndarray | None = None,
                user_items: np.ndarray | None = None, hidden_ids: np.ndarray | None = None) -> PinSageBatch:
    """Assemble a :class:`PinSageBatch` from item ids ``query``, ``pos`` ``[B]``,
    ``shared`` ``[S]``, ``hard`` ``[B, H]`` and optional ``(users, user_items)`` ``[U]``
    pairs: the ``num_layers``-layer re-indexed subgraph (``neighborhood(nodes)``) of every
    distinct item among them, with the layer-0 features from ``features``;
    ``hidden_ids`` (bool ``[N]``): items whose ID the model must not read."""
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
    if hidden_ids is not None:
        batch.id_rows = torch.from_numpy(np.where(hidden_ids[nodes[0]], -1, nodes[0]))
    if user_items is not None:
        batch.users = torch.from_numpy(np.asarray(users, dtype=np.int64))
        batch.user_pos = torch.from_numpy(inv[2 * b + s + nh :])
        batch.user_mask = torch.from_numpy(shared[None, :] != extra[:, None])
    return batch


class PinSageBatches(IterableDataset):
    """One epoch of PinSage minibatches, built by whichever DataLoader worker owns them.

    The ``(query, pos)`` pairs (item ids ``[P]``) are shuffled with ``(seed, epoch)`` and
    cut into ``⌈P / batch_size⌉`` batches; training worker ``rank`` of ``world`` takes
    every ``world``-th batch (the last ``⌈P / batch_size⌉ mod world`` are dropped, so every
    worker runs the same number of steps), and DataLoader worker ``w`` of ``W`` builds
    every ``W``-th of those (the loader returns them in order, so results do not depend
    on ``W``). Every batch draws its ``shared_negatives`` uniform items, its
    ``hard_per_query`` hard negatives (from ``hard``) and, with a walk neighbourhood, its
    walks from one generator seeded by ``(seed, epoch, batch index)``.

    ``neighborhood``: a fixed :class:`~graphrec.sampling.walks.ImportanceNeighborhoods`
    table, or ``rng -> neighborhood(nodes)`` (e.g. ``functools.partial`` of
    :func:`walk_neighborhood` without its ``rng``). ``interactions = (users, items)``
    (``[E]`` each) adds user→item pairs: an epoch's permutation of them is dealt out
    evenly over the batches. ``start``: skip this worker's first ``start`` batches (the
    rest are the same batches as an uninterrupted epoch: resuming mid-epoch); ``len`` is
    always the whole epoch's count.

    ``cold = (rate, side)`` simulates cold start (DropoutNet-style, for inductive use):
    each epoch a ``rate`` fraction of the items (drawn with ``(seed, epoch)``) is
    presented as items nobody interacted with yet — no ID vector, and the neighbours of
    the ``side`` table (walks that avoid the interaction relation, e.g. over a knowledge
    graph) instead of co-engagement ones — so the features and side neighbourhoods learn
    to place an item where its co-engagement would.
    """

    def __init__(self, query: np.ndarray, pos: np.ndarray, num_items: int, batch_size: int, num_layers: int,
                 neighborhood: ImportanceNeighborhoods | Callable[[np.random.Generator], Callable],
                 features: NodeFeatureTable | None, shared_negatives: int, hard: PPRHardNegatives | None,
                 hard_per_query: int, epoch: int, seed: int = 0, rank: int = 0, world: int = 1,
                 interactions: tuple[np.ndarray, np.ndarray] | None = None, start: int = 0,
                 cold: tuple[float, ImportanceNeighborhoods] | None = None):
        super().__init__()
        if cold is not None and not isinstance(neighborhood, ImportanceNeighborhoods):
            raise ValueError("cold-start simulation needs fixed neighbourhood tables")
        self.start, self.cold = start, cold
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
            inter_users, inter_items = self.interactions
            n_inter = inter_users.shape[0]
            uperm = np.random.default_rng([self.seed, self.epoch, 19]).permutation(n_inter)
            per_batch = -(-n_inter // max(self._global_batches, 1))
        cold_items = None
        if self.cold is not None and self.cold[0] > 0:
            cold_items = np.random.default_rng([self.seed, self.epoch, 31]).random(self.num_items) < self.cold[0]
        for j in range(self.start + wid, self.num_batches, nw):
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
            if cold_items is not None:
                nbh = cold_neighborhood(nbh, self.cold[1], cold_items)
            users = user_items = None
            if self.interactions is not None:
                usel = uperm[g * per_batch : (g + 1) * per_batch]
                users, user_items = inter_users[usel], inter_items[usel]
            yield build_batch(q, p, shared, hard, self.num_layers, nbh, self.features, users, user_items, cold_items)


def collate_identity(batch):
    """DataLoader ``collate_fn`` for datasets that yield whole batches (with
    ``batch_size=None``): the batch as it is."""
    return batch
