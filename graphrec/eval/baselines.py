"""Baselines every evaluation reports next to the models, on the same protocol.

``popularity``: an item's score is its number of interactions in the training graph's
split relation (the same for every user and every query item); ties between equally
popular items count as a random order (:mod:`graphrec.eval.metrics`).

``content`` (cold start, where popularity knows nothing): items are compared by what
describes them — :func:`content_vectors` — and a user's score for an item is the cosine
of the item's content vector with the mean content vector of the user's history
(:func:`content_scorer`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from graphrec.eval.split import Split
from graphrec.graph.store import GraphStore


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


def _tfidf_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Binary ``m`` (items × tokens) weighted by ``idf = log(N / df)`` and L2-normalised per row."""
    m = (m > 0).astype(np.float32).tocsr()
    df = np.asarray(m.sum(0)).ravel()
    idf = np.log(m.shape[0] / np.maximum(df, 1)).astype(np.float32)
    m = m @ sp.diags(idf)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m


def feature_matrix(store: GraphStore, item_type: str) -> sp.csr_matrix | None:
    """Items × feature tokens of the item features: a column per category of each
    categorical and (multi-categorical / text) bag feature, and per numeric feature its
    decile bucket; TF-IDF weighted, rows L2-normalised. ``None`` without features."""
    n = store.num_nodes(item_type)
    blocks = []
    for name in store.feature_names(item_type):
        f = store.feature(item_type, name)
        if f.kind == "categorical":
            codes = np.asarray(f.codes, np.int64)
            rows, cols, width = np.arange(n)[codes > 0], codes[codes > 0], f.num_categories
        elif f.kind == "numeric":
            v = np.asarray(f.values, np.float64)
            ok = np.isfinite(v)
            edges = np.unique(np.quantile(v[ok], np.linspace(0, 1, 11)[1:-1])) if ok.any() else np.zeros(0)
            rows, cols, width = np.flatnonzero(ok), np.searchsorted(edges, v[ok]), edges.shape[0] + 1
        else:
            offsets = np.asarray(f.offsets)
            rows, cols, width = np.repeat(np.arange(n), np.diff(offsets)), np.asarray(f.codes, np.int64), f.num_categories
        blocks.append(sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=(n, max(width, 1))))
    return _tfidf_rows(sp.hstack(blocks).tocsr()) if blocks else None


def graph_neighbor_matrix(store: GraphStore, item_type: str, exclude_types: tuple[str, ...], hops: int = 2
                          ) -> sp.csr_matrix | None:
    """Items × nodes reachable in ``1..hops`` hops over every relation (reverse views
    included) that avoids ``exclude_types`` and the item type past the first step — e.g.
    an item's knowledge-graph film, its actors, director, genres; TF-IDF weighted, rows
    L2-normalised. ``None`` when the item type has no such relation."""
    types = [t for t in store.node_types if t not in exclude_types and t != item_type]
    offset = dict(zip(types, np.cumsum([0] + [store.num_nodes(t) for t in types])[:-1]))
    total = sum(store.num_nodes(t) for t in types)

    def adjacency(src_type: str) -> sp.csr_matrix:
        m = sp.csr_matrix((store.num_nodes(src_type), total), dtype=np.float32)
        for rel in store.relations():
            if rel.src_type != src_type or rel.dst_type not in offset:
                continue
            s, d = rel.coo()
            m = m + sp.csr_matrix((np.ones(s.shape[0], np.float32), (s, np.asarray(d, np.int64) + offset[rel.dst_type])),
                                  shape=m.shape)
        return m

    first = adjacency(item_type)
    if first.nnz == 0:
        return None
    if hops > 1:
        inner = sp.vstack([adjacency(t) for t in types]).tocsr() if types else None
        reach = first
        frontier = first
        for _ in range(hops - 1):
            frontier = frontier @ inner
            reach = reach + frontier
        first = reach
    return _tfidf_rows(first)


def content_vectors(store: GraphStore, item_type: str, kind: str = "features+graph",
                    exclude_types: tuple[str, ...] = ()) -> sp.csr_matrix:
    """Content vectors ``[N_items, F]`` (sparse, rows L2-normalised): ``features`` (the
    item features, :func:`feature_matrix`), ``graph`` (knowledge-graph neighbours within
    two hops, :func:`graph_neighbor_matrix`, avoiding ``exclude_types`` such as users),
    or both side by side (``features+graph``, each half weighted ``1/√2``)."""
    parts = []
    if kind in ("features", "features+graph"):
        parts.append(feature_matrix(store, item_type))
    if kind in ("graph", "features+graph"):
        parts.append(graph_neighbor_matrix(store, item_type, exclude_types))
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError(f"{store.path}: node type {item_type!r} has no {kind} content")
    m = sp.hstack(parts).tocsr() if len(parts) > 1 else parts[0]
    return (m * (1.0 / np.sqrt(len(parts)))).tocsr().astype(np.float32)


def content_scorer(store: GraphStore, relation, candidates: np.ndarray, kind: str = "features+graph"):
    """``score_fn(users [B]) -> [B, C]``: cosine of each candidate item's content vector
    (:func:`content_vectors`) with the mean content vector of the user's items in
    ``relation`` of ``store`` (a user without history scores 0 everywhere: a random order)."""
    user_type, _, item_type = relation
    x = content_vectors(store, item_type, kind, exclude_types=(user_type,))
    rel = store.relation(relation)
    adj = sp.csr_matrix((np.ones(rel.num_edges, np.float32), np.asarray(rel.indices), np.asarray(rel.indptr)),
                        shape=(rel.num_src, rel.num_dst))
    profile = adj @ x  # [U, F]: sum of the history's vectors (the mean up to a per-user scale)
    norms = np.sqrt(np.asarray(profile.multiply(profile).sum(1)).ravel())
    profile = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ profile
    cand = x[np.asarray(candidates, np.int64)].T.tocsc()

    def score(users: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray((profile[users.numpy()] @ cand).todense(), dtype=np.float32))

    return score
