"""Baselines every evaluation reports next to the models, on the same protocol.

``popularity``: an item's score is its number of interactions in the training graph's
split relation (the same for every user and every query item); ties between equally
popular items count as a random order (:mod:`graphrec.eval.metrics`).
"""

from __future__ import annotations

import numpy as np
import torch

from graphrec.eval.split import Split


def item_popularity(split: Split) -> np.ndarray:
    """Interactions per item in the train graph's split relation, float32 ``[N_items]``."""
    rel = split.train.relation(split.relation)
    return np.asarray(rel.in_degree(), dtype=np.float32)


def popularity_scorer(split: Split):
    """``score_fn(queries [B]) -> [B, N_items]``: item popularity, whatever the query."""
    pop = torch.from_numpy(item_popularity(split))
    return lambda q: pop.expand(q.shape[0], -1)


def relation_popularity_scorers(store, edge_types):
    """Link-prediction popularity: a candidate tail of relation ``r`` scores its in-degree
    in ``r`` (train graph), a candidate head its out-degree; the same for every query.
    Returns ``(score_tails(et, heads [B]) -> [B, N_dst], score_heads(et, tails [B]) -> [B, N_src])``."""
    tail_counts = {tuple(et): torch.from_numpy(np.asarray(store.relation(et).in_degree(), np.float32)) for et in edge_types}
    head_counts = {tuple(et): torch.from_numpy(np.asarray(store.relation(et).out_degree(), np.float32)) for et in edge_types}

    def tails(et, heads):
        return tail_counts[tuple(et)].expand(heads.shape[0], -1)

    def heads(et, tails_):
        return head_counts[tuple(et)].expand(tails_.shape[0], -1)

    return tails, heads
