"""Warm-starting TwHIN on a newer graph from an earlier run, and the drift between them.

:func:`warm_start` initialises a fresh :class:`~graphrec.models.twhin.TwHIN` for a newer
graph (same schema: more nodes, more edges) from a finished run on an older one:

* a node present in the earlier run (same node type, same original id) starts from its
  vector there;
* a new node starts from the mean of the vectors of its neighbours that the earlier run
  knew, over every relation in either direction,
  ``x_v = Σ_{u ∈ N(v) ∩ old} x_u / |N(v) ∩ old|`` (vectorised with ``index_add_``), or
  keeps its random initialisation when it has none;
* relation vectors of relations the earlier run trained are carried over.

With ``freeze_existing`` the rows of the carried-over nodes receive no gradient
(:func:`freeze_rows`), so old embeddings stay exactly where they were and new nodes
are fitted around them. :func:`drift_report` measures how far the nodes present in both
runs moved: the mean cosine of their two vectors and the overlap of their 10 nearest
neighbours (cosine, among those nodes of the same type) in the two runs.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore
from graphrec.models.twhin import TwHIN

log = logging.getLogger(__name__)


def matched_rows(store: GraphStore, previous_store: GraphStore, node_type: str) -> np.ndarray:
    """Each node of ``node_type`` in ``store``: its row in ``previous_store`` (by original
    id), ``-1`` for new nodes; all ``-1`` when the earlier graph lacks the type."""
    if node_type not in previous_store.node_types:
        return np.full(store.num_nodes(node_type), -1, dtype=np.int64)
    return previous_store.lookup(node_type, store.node_ids(node_type))


@torch.no_grad()
def warm_start(model: TwHIN, store: GraphStore, previous: TwHIN, previous_store: GraphStore) -> tuple[torch.Tensor, dict]:
    """Initialise ``model`` (for ``store``) from ``previous`` (trained on
    ``previous_store``) as the module docstring says; returns ``(carried [total] bool —
    the global rows that came from ``previous`` —, counts)``."""
    if previous.dim != model.dim:
        raise GraphrecError(f"--init-from: the earlier run has dim {previous.dim}, this config {model.dim}")
    if type(previous.score_fn) is not type(model.score_fn):
        raise GraphrecError("--init-from: the earlier run scores with another function than this config")
    weight = model.node_emb.weight
    carried = torch.zeros(weight.shape[0], dtype=torch.bool)
    counts = {"carried": 0, "from_neighbours": 0, "random": 0, "relations": 0}
    for t in model.num_nodes:
        rows = matched_rows(store, previous_store, t)
        known = np.flatnonzero(rows >= 0)
        if known.size:
            dst = torch.from_numpy(known + model.offsets[t])
            weight[dst] = previous.node_embeddings(t)[torch.from_numpy(rows[known])].to(weight.dtype)
            carried[dst] = True
    total = torch.zeros_like(weight)
    n = torch.zeros(weight.shape[0], dtype=weight.dtype)
    for rel in store.relations():
        if rel.is_reverse:
            continue
        s, d = rel.coo()
        gs = torch.from_numpy(np.asarray(s, np.int64) + model.offsets[rel.src_type])
        gd = torch.from_numpy(np.asarray(d, np.int64) + model.offsets[rel.dst_type])
        for a, b in ((gs, gd), (gd, gs)):  # b learns from a, where a is carried and b is not
            sel = carried[a] & ~carried[b]
            total.index_add_(0, b[sel], weight[a[sel]])
            n.index_add_(0, b[sel], torch.ones(int(sel.sum()), dtype=weight.dtype))
    fill = ~carried & (n > 0)
    weight[fill] = total[fill] / n[fill, None]
    for i, et in enumerate(model.edge_types):
        if et in previous.edge_types:
            model.rel_emb.weight[i] = previous.relation_embedding(et).to(weight.dtype)
            counts["relations"] += 1
    counts.update(carried=int(carried.sum()), from_neighbours=int(fill.sum()),
                  random=int((~carried & ~fill).sum()))
    return carried, counts


def freeze_rows(param: torch.nn.Parameter, frozen: torch.Tensor):
    """Zero the gradient of ``param``'s rows where ``frozen`` (bool ``[rows]``), dense or
    sparse, so no optimizer moves them (Adagrad/Adam updates of a zero gradient are zero);
    returns the hook handle."""
    keep = (~frozen).to(param.dtype)[:, None]

    def hook(grad: torch.Tensor) -> torch.Tensor:
        if grad.is_sparse:
            grad = grad.coalesce()
            return torch.sparse_coo_tensor(grad.indices(), grad.values() * keep[grad.indices()[0]], grad.shape)
        return grad * keep

    return param.register_hook(hook)


@torch.no_grad()
def drift_report(model: TwHIN, store: GraphStore, previous: TwHIN, previous_store: GraphStore, k: int = 10,
                 max_queries: int = 1000, seed: int = 0, chunk: int = 65536) -> dict:
    """How far the nodes present in both runs moved: per node type and overall, the mean
    cosine of their two vectors and the mean overlap ``|kNN_old(v) ∩ kNN_new(v)| / k`` of
    their ``k`` nearest neighbours by cosine among those nodes of the type (for up to
    ``max_queries`` seeded sample nodes per type; types with ``≤ k`` such nodes report
    no overlap)."""
    per_type, cos_sum, cos_n, ov_sum, ov_n = {}, 0.0, 0, 0.0, 0
    rng = np.random.default_rng(seed)
    for t in model.num_nodes:
        rows = matched_rows(store, previous_store, t)
        both = np.flatnonzero(rows >= 0)
        if both.size == 0:
            continue
        new = torch.nn.functional.normalize(model.node_embeddings(t)[torch.from_numpy(both)].float(), dim=1)
        old = torch.nn.functional.normalize(previous.node_embeddings(t)[torch.from_numpy(rows[both])].float(), dim=1)
        cos = (new * old).sum(1)
        entry = {"nodes": int(both.size), "mean_cosine": float(cos.mean())}
        cos_sum, cos_n = cos_sum + float(cos.sum()), cos_n + int(both.size)
        if both.size > k:
            q = np.sort(rng.choice(both.size, size=min(max_queries, both.size), replace=False))
            a, b = _knn(new, q, k, chunk), _knn(old, q, k, chunk)
            frac = (a[:, :, None] == b[:, None, :]).any(2).float().mean(1)
            entry[f"knn_overlap@{k}"] = float(frac.mean())
            ov_sum, ov_n = ov_sum + float(frac.sum()), ov_n + int(q.size)
        per_type[t] = entry
    return {"nodes": cos_n, "mean_cosine": cos_sum / max(cos_n, 1),
            f"knn_overlap@{k}": ov_sum / ov_n if ov_n else None, "by_type": per_type,
            "definition": f"nodes present in both runs (same type and original id); mean cosine of their two vectors; "
                          f"overlap of their {k} nearest neighbours by cosine among those nodes, over up to "
                          f"{max_queries} sampled nodes per type"}


def _knn(x: torch.Tensor, queries: np.ndarray, k: int, chunk: int) -> torch.Tensor:
    """``[Q, k]`` indices of the ``k`` nearest rows of ``x`` (unit rows; cosine) to
    ``x[queries]``, each query itself excluded; candidates scored ``chunk`` at a time."""
    q = torch.from_numpy(queries)
    zq = x[q]
    best_s = torch.full((q.shape[0], k), float("-inf"))
    best_i = torch.zeros((q.shape[0], k), dtype=torch.long)
    for lo in range(0, x.shape[0], chunk):
        s = zq @ x[lo : lo + chunk].T
        inside = (q >= lo) & (q < lo + s.shape[1])
        s[inside.nonzero().squeeze(1), q[inside] - lo] = float("-inf")
        cat_s = torch.cat([best_s, s], 1)
        cat_i = torch.cat([best_i, torch.arange(lo, lo + s.shape[1]).expand(q.shape[0], -1)], 1)
        best_s, pos = cat_s.topk(k, dim=1)
        best_i = cat_i.gather(1, pos)
    return best_i
