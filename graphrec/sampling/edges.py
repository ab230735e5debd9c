"""Positive-edge batches over several relations, for knowledge-graph training.

:class:`RelationBatchSchedule` decides, per epoch, which relation each step trains on
and draws that step's positive edges from this worker's shard, all vectorised:

* relation ``r`` contributes ``ceil(round(w_r * E_r / world) / batch_size)`` batches of
  ``batch_size`` positives of that single relation to each worker per epoch (so
  negatives share a type), at least one for a non-empty relation (``w_r`` the relation
  weight; ``w_r < 1`` subsamples a huge relation, ``w_r > 1`` or a last partial batch
  cycles a small one);
* the order of steps is shuffled with ``(seed, epoch)`` only, and step counts come from
  the global edge counts, so every worker runs the same number of steps on the same
  relations in lock step (needed by all-reduce) whatever the relation sizes — a rank
  whose shard of a tiny relation is empty draws from the whole relation;
* each worker owns a disjoint shard of every relation's edges (``perm[rank::world]`` of
  a seed-fixed permutation) and reshuffles it each epoch with ``(seed, epoch, rank)``;
* ``holdout_fraction`` of every relation (seed-fixed) is kept out of training for
  early stopping;
* a relation with per-edge ``weight`` draws its positives with probability
  ``∝ weight`` (with replacement) instead of a shuffled pass (e.g. recency weights:
  recent interactions are drawn more often).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RelationEdges:
    """Edges of one relation as local ids: ``src``, ``dst`` int64 ``[E]``; optional
    ``weight`` float ``[E]`` (>= 0), the relative probability of drawing each edge."""

    edge_type: tuple
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray | None = None

    def __post_init__(self):
        if self.weight is not None:
            w = np.asarray(self.weight, dtype=np.float64)
            if w.shape != self.src.shape:
                raise ValueError(f"relation {':'.join(self.edge_type)}: {w.shape[0]} edge weights for "
                                 f"{self.src.shape[0]} edges")
            if not np.all(np.isfinite(w)) or (w < 0).any():
                raise ValueError(f"relation {':'.join(self.edge_type)}: edge weights must be finite and >= 0")
            self.weight = w

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


class RelationBatchSchedule:
    def __init__(self, relations: list[RelationEdges], weights: list[float], batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, holdout_fraction: float = 0.0):
        if len(relations) != len(weights):
            raise ValueError("one weight per relation")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.relations = relations
        self.weights = [float(w) for w in weights]
        self.batch_size = batch_size
        self.seed, self.rank, self.world = seed, rank, world_size
        self.train_ids: list[np.ndarray] = []
        self._all_train_ids: list[np.ndarray] = []  # every rank's
        self.holdout_ids: list[np.ndarray] = []
        self.steps_per_relation: list[int] = []
        for i, rel in enumerate(relations):
            perm = np.random.default_rng([seed, 7919, i]).permutation(rel.num_edges)
            n_hold = int(round(holdout_fraction * rel.num_edges)) if holdout_fraction > 0 else 0
            self.holdout_ids.append(np.sort(perm[:n_hold]))
            train = perm[n_hold:]
            self._all_train_ids.append(train)
            shard = train[rank::world_size]
            # a relation smaller than the world: ranks without an edge of their own draw
            # from the whole relation, so that every rank runs the same steps
            self.train_ids.append(shard if shard.size or not train.size else train)
            # same number of steps on every worker: sized from the global train edge count
            # only (never from this rank's shard), at least one step for a non-empty relation
            per_worker = self.weights[i] * train.size / world_size
            self.steps_per_relation.append(0 if train.size == 0 or self.weights[i] <= 0
                                           else max(1, -(-int(round(per_worker)) // batch_size)))

    @property
    def steps_per_epoch(self) -> int:
        return int(sum(self.steps_per_relation))

    def holdout(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rel, ids = self.relations[i], self.holdout_ids[i]
        return rel.src[ids], rel.dst[ids]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(relation index, heads [B], tails [B])`` LongTensors for one epoch, from
        step ``start`` on (the same steps as an uninterrupted epoch: resuming mid-epoch)."""
        order = np.repeat(np.arange(len(self.relations)), self.steps_per_relation)
        np.random.default_rng([self.seed, epoch]).shuffle(order)
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        pools = []
        for i, ids in enumerate(self.train_ids):
            need = self.steps_per_relation[i] * self.batch_size
            if need == 0:
                pools.append(ids[:0])
                continue
            w = self.relations[i].weight
            if w is not None:
                p = w[ids]
                if p.sum() <= 0:  # this rank's shard has only weight-0 edges: draw from every rank's
                    every = self._all_train_ids[i]
                    ids = every[w[every] > 0] if (w[every] > 0).any() else ids
                    p = w[ids] if w[ids].sum() > 0 else np.ones(ids.size)
                pools.append(rng.choice(ids, size=need, p=p / p.sum()))
                continue
            reps = -(-need // ids.size)
            pools.append(np.concatenate([rng.permutation(ids) for _ in range(reps)])[:need])
        cursor = np.zeros(len(self.relations), dtype=np.int64)
        if start > 0:  # the steps before ``start`` consumed these batches of each relation
            cursor += np.bincount(order[:start], minlength=len(self.relations)) * self.batch_size
        for i in order[start:]:
            sel = pools[i][cursor[i] : cursor[i] + self.batch_size]
            cursor[i] += self.batch_size
            rel = self.relations[i]
            yield int(i), torch.from_numpy(rel.src[sel]), torch.from_numpy(rel.dst[sel])
