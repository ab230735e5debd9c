"""Positive-edge batches over several relations, for knowledge-graph training.

:class:`RelationBatchSchedule` decides, per epoch, which relations each step trains on
and draws that step's positive edges from this worker's shard, all vectorised. Batches
hold positives of one *group* of relations, whose negatives share a node type:

* ``group_by="relation"``: a group is one relation. Relation ``r`` contributes
  ``ceil(round(w_r * E_r / world) / batch_size)`` batches of ``batch_size`` positives to
  each worker per epoch, at least one for a non-empty relation (``w_r`` the relation
  weight; ``w_r < 1`` subsamples a huge relation, ``w_r > 1`` or a last partial batch
  cycles a small one);
* ``group_by="types"``: a group is every relation between the same (source type,
  destination type), as PyTorch-BigGraph batches. Relation ``r`` contributes
  ``n_r = max(1, round(w_r * E_r / world))`` positives, the group's ``sum n_r`` are
  shuffled together into ``ceil(sum n_r / batch_size)`` batches (the last one partial),
  each positive keeping its relation;
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
    """Per-epoch positive batches of ``relations`` for worker ``rank`` of ``world_size``
    (see the module docstring); :meth:`epoch` yields ``(relation, heads [B], tails [B],
    relations [B] or None)``."""

    def __init__(self, relations: list[RelationEdges], weights: list[float], batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, holdout_fraction: float = 0.0,
                 group_by: str = "relation"):
        if len(relations) != len(weights):
            raise ValueError("one weight per relation")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if group_by not in ("relation", "types"):
            raise ValueError(f"group_by must be 'relation' or 'types', not {group_by!r}")
        self.group_by = group_by
        self.relations = relations
        self.weights = [float(w) for w in weights]
        self.batch_size = batch_size
        self.seed, self.rank, self.world = seed, rank, world_size
        self.train_ids: list[np.ndarray] = []
        self._all_train_ids: list[np.ndarray] = []  # every rank's
        self.holdout_ids: list[np.ndarray] = []
        self.steps_per_relation: list[int] = []  # group_by="relation"
        self.positives_per_relation: list[int] = []  # group_by="types"
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
            self.positives_per_relation.append(0 if self.steps_per_relation[-1] == 0
                                               else max(1, int(round(per_worker))))
        # groups: lists of relation indices that share batches
        if group_by == "types":
            keyed: dict[tuple, list[int]] = {}
            for i, rel in enumerate(relations):
                keyed.setdefault((rel.edge_type[0], rel.edge_type[-1]), []).append(i)
            self.groups = list(keyed.values())
            self.steps_per_group = [-(-sum(self.positives_per_relation[i] for i in g) // batch_size)
                                    for g in self.groups]
        else:
            self.groups = [[i] for i in range(len(relations))]
            self.steps_per_group = list(self.steps_per_relation)

    @property
    def steps_per_epoch(self) -> int:
        return int(sum(self.steps_per_group))

    def holdout(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rel, ids = self.relations[i], self.holdout_ids[i]
        return rel.src[ids], rel.dst[ids]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor,
                                                                    torch.Tensor | None]]:
        """Yield ``(relation index, heads [B], tails [B], relations [B] or None)``
        LongTensors for one epoch, from step ``start`` on (the same steps as an
        uninterrupted epoch: resuming mid-epoch). ``relations`` (each positive's relation
        index) is given only for a batch that mixes relations; ``relation index`` is then
        the group's first."""
        order = np.repeat(np.arange(len(self.groups)), self.steps_per_group)
        np.random.default_rng([self.seed, epoch]).shuffle(order)
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        counts = (self.steps_per_relation if self.group_by == "relation" else None)
        pools = []  # per group: (relation of each positive or None, edge ids)
        for g in self.groups:
            ids_per_rel, rel_per = [], []
            for i in g:
                need = (counts[i] * self.batch_size) if counts is not None else self.positives_per_relation[i]
                ids_per_rel.append(self._draw(i, need, rng))
                rel_per.append(np.full(need, i, dtype=np.int64))
            if len(g) == 1:
                pools.append((None, ids_per_rel[0]))
                continue
            ids, rels = np.concatenate(ids_per_rel), np.concatenate(rel_per)
            perm = rng.permutation(ids.shape[0])
            pools.append((rels[perm], ids[perm]))
        cursor = np.zeros(len(self.groups), dtype=np.int64)
        if start > 0:  # the steps before ``start`` consumed these batches of each group
            cursor += np.bincount(order[:start], minlength=len(self.groups)) * self.batch_size
        for gi in order[start:]:
            rels, ids = pools[gi]
            lo = cursor[gi]
            cursor[gi] += self.batch_size
            if rels is None:
                i = self.groups[gi][0]
                sel = ids[lo : lo + self.batch_size]
                rel = self.relations[i]
                yield int(i), torch.from_numpy(rel.src[sel]), torch.from_numpy(rel.dst[sel]), None
                continue
            r, sel = rels[lo : lo + self.batch_size], ids[lo : lo + self.batch_size]
            heads, tails = np.empty(sel.shape[0], np.int64), np.empty(sel.shape[0], np.int64)
            for i in self.groups[gi]:
                m = r == i
                heads[m], tails[m] = self.relations[i].src[sel[m]], self.relations[i].dst[sel[m]]
            yield int(self.groups[gi][0]), torch.from_numpy(heads), torch.from_numpy(tails), torch.from_numpy(r)

    def _draw(self, i: int, need: int, rng: np.random.Generator) -> np.ndarray:
        """``need`` edge ids of relation ``i`` from this rank's shard: a shuffled pass
        (cycled when ``need`` exceeds the shard) or, with edge weights, ``∝ weight``."""
        ids = self.train_ids[i]
        if need == 0:
            return ids[:0]
        w = self.relations[i].weight
        if w is not None:
            p = w[ids]
            if p.sum() <= 0:  # this rank's shard has only weight-0 edges: draw from every rank's
                every = self._all_train_ids[i]
                ids = every[w[every] > 0] if (w[every] > 0).any() else ids
                p = w[ids] if w[ids].sum() > 0 else np.ones(ids.size)
            return rng.choice(ids, size=need, p=p / p.sum())
        reps = -(-need // ids.size)
        return np.concatenate([rng.permutation(ids) for _ in range(reps)])[:need]
