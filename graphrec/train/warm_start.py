"""Warm-starting TwHIN on a newer graph from an earlier run, and the drift between them.

:func:`warm_start` initialises a fresh :class:`~graphrec.models.twhin.TwHIN` for a newer
graph (same schema: more nodes, more edges) from a finished run on an older one:

* a node present in the earlier run (same node type, same original id) starts from its
  vector there;
* a new node starts from the mean of the vectors of its neighbours that the earlier run
  knew, over every relation in either direction,
  ``x_v = Σ_{u ∈ N(v) ∩ old} x_u / |N(v) ∩ old|`` (vectorised with ``index_add_``), or
  keeps its random initialisation when it has none;
* relation vectors of relations the earlier run trained are carried over;
* with ``carry_optimizer_state`` (the default), the optimizer state of carried rows and
  relations — Adagrad's accumulated squared gradients, Adam's moments — is copied from
  the earlier run's last checkpoint (:func:`carry_optimizer_state`), so those rows go on
  with the step sizes they had reached, while new rows start with fresh state (full
  learning rate).

With ``freeze_existing`` the rows of the carried-over nodes receive no gradient
(:func:`freeze_rows`), so old embeddings stay exactly where they were and new nodes
are fitted around them. :func:`drift_report` measures how far the nodes present in both
runs moved: the mean cosine of their two vectors and the overlap of their 10 nearest
neighbours (cosine, among those nodes of the same type) in the two runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

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


def previous_global_rows(model: TwHIN, store: GraphStore, previous: TwHIN, previous_store: GraphStore) -> torch.Tensor:
    """``[total]`` int64: for each global row of ``model`` (for ``store``), the global row
    of the same node (type and original id) in ``previous`` (for ``previous_store``), or
    ``-1`` for a node the earlier run did not have."""
    source = torch.full((sum(model.num_nodes.values()),), -1, dtype=torch.long)
    for t in model.num_nodes:
        rows = matched_rows(store, previous_store, t)
        known = np.flatnonzero(rows >= 0)
        if known.size and t in previous.offsets:
            source[torch.from_numpy(known + model.offsets[t])] = torch.from_numpy(rows[known] + previous.offsets[t])
    return source


def previous_relation_rows(model: TwHIN, previous: TwHIN) -> torch.Tensor:
    """``[relations]`` int64: each relation's row in ``previous`` (``-1``: not trained there)."""
    index = {et: i for i, et in enumerate(previous.edge_types)}
    return torch.tensor([index.get(et, -1) for et in model.edge_types], dtype=torch.long)


def previous_optimizer_state(run, optimizer: str, rows: list[int]) -> tuple[list[dict] | None, str]:
    """The optimizer state the earlier run ``run`` (an opened TwHIN run) ended with — its newest checkpoint's, which
    :class:`~graphrec.train.engine.Trainer` keeps after the run finishes — as ``(states,
    "carried from CKPT")``, or ``(None, why not)`` when it has none, it does not verify, the
    run trained with another optimizer than ``optimizer``, or its per-row tensors do not
    have ``rows[i]`` rows for optimizer ``i`` (the earlier run's table sizes) (then the
    optimizer starts fresh: the warm start still works, its carried rows take full-size
    first steps)."""
    from graphrec.run.checkpoint import CheckpointDir
    from graphrec.run.directory import CHECKPOINTS_DIR

    previous = run.config.optimizer
    if previous != optimizer:
        return None, f"fresh (the earlier run trained with optimizer {previous!r}, this one with {optimizer!r})"
    found = CheckpointDir(Path(run.dir) / CHECKPOINTS_DIR).latest()
    if found is None:
        return None, f"fresh (no checkpoint left in {Path(run.dir) / CHECKPOINTS_DIR})"
    tag, state = found
    saved = state.get("optimizers", [])
    if len(saved) != len(rows):
        return None, f"fresh ({tag} holds {len(saved)} optimizer states, this run has {len(rows)})"
    for opt_state, n in zip(saved, rows, strict=True):
        for param_state in opt_state.get("state", {}).values():
            sizes = {int(v.shape[0]) for v in param_state.values() if torch.is_tensor(v) and v.dim() > 0}
            if sizes - {n}:
                return None, f"fresh ({tag} holds optimizer rows {sorted(sizes)}, the earlier run's table has {n})"
    return saved, f"carried from {tag}"


@torch.no_grad()
def carry_optimizer_state(optimizers: list[torch.optim.Optimizer], state: list[dict], maps: list[torch.Tensor]) -> int:
    """Copy an earlier run's optimizer state (``state``: its ``optimizer.state_dict()``s, one
    per optimizer, each over one ``[rows, ...]`` table) into ``optimizers`` row by row:
    row ``r`` of every per-row tensor (Adagrad's ``sum``, Adam's moments, RowAdagrad's
    ``[rows]`` sums) takes row ``maps[i][r]`` of the earlier one; rows mapped to ``-1`` keep
    the fresh state (zeros), scalars (``step``) take the earlier value. So carried rows
    continue with the step sizes they had reached instead of the full learning rate again.
    Returns the number of tensors copied."""
    copied = 0
    for opt, saved, source in zip(optimizers, state, maps, strict=True):
        params = [p for g in opt.param_groups for p in g["params"]]
        saved_ids = [i for g in saved["param_groups"] for i in g["params"]]
        if len(params) != len(saved_ids):
            raise GraphrecError(f"optimizer state of {len(saved_ids)} parameters for {len(params)}")
        known = source >= 0
        for p, i in zip(params, saved_ids, strict=True):
            old = saved["state"].get(i, {})
            cur = opt.state[p]
            for key, value in old.items():
                if not torch.is_tensor(value) or value.dim() == 0:  # a step count
                    cur[key] = value.clone() if torch.is_tensor(value) else value
                    continue
                fresh = cur.get(key)
                if fresh is None or fresh.shape[1:] != value.shape[1:]:
                    fresh = torch.zeros((p.shape[0], *value.shape[1:]), dtype=value.dtype)
                fresh[known] = value[source[known]].to(fresh.dtype)
                cur[key] = fresh
                copied += 1
    return copied


@torch.no_grad()
def warm_start(model: TwHIN, store: GraphStore, previous: TwHIN, previous_store: GraphStore) -> tuple[torch.Tensor, dict]:
    """Initialise ``model`` (for ``store``) from ``previous`` (trained on
    ``previous_store``) as the module docstring says; returns ``(source, counts)``:
    ``source [total]`` int64 is :func:`previous_global_rows` (``source >= 0``: the rows
    carried from ``previous``; the same map carries their optimizer state)."""
    if previous.dim != model.dim:
        raise GraphrecError(f"--init-from: the earlier run has dim {previous.dim}, this config {model.dim}")
    if type(previous.score_fn) is not type(model.score_fn):
        raise GraphrecError("--init-from: the earlier run scores with another function than this config")
    weight = model.node_emb.weight
    source = previous_global_rows(model, store, previous, previous_store)
    carried = source >= 0
    counts = {"carried": 0, "from_neighbours": 0, "random": 0, "relations": 0}
    weight[carried] = previous.node_emb.weight[source[carried]].to(weight.dtype)
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
    return source, counts


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
