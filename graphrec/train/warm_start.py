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

Either run may be partitioned (``partitions > 1``, tables that need not fit in memory):
:class:`NodeVectors` reads node vectors and their Adagrad state by internal id the same
way from an in-memory model or from a partitioned run's tables (partition by partition,
memory-mapped), :func:`neighbour_means` streams the edges CSR chunk by CSR chunk, and
:func:`warm_start_partition` fills one partition of a new partitioned run's tables as it
is first written (:meth:`graphrec.run.tables.PartitionTables.initialise`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore
from graphrec.models.twhin import TwHIN
from graphrec.run.tables import RELATIONS_SUM, PartitionTables

log = logging.getLogger(__name__)

EDGE_CHUNK = 1 << 22  # edges read at a time by neighbour_means


class NodeVectors:
    """The node vectors of a TwHIN (and, for partition tables, their Adagrad state) by
    node type and internal id, read the same way from an in-memory model and from a
    partitioned run's committed tables.

    Args:
        source: a :class:`~graphrec.models.twhin.TwHIN`, a finished TwHIN run
            (:class:`~graphrec.run.directory.TwHINRun`: its loaded model, or its tables at
            the version run.json pins), or ``(PartitionTables, Manifest)``.

    ``vectors(t, ids)`` gathers rows (float32 ``[n, dim]``); from tables it reads each
    partition the ids fall in, memory-mapped when local, so memory holds the gathered
    rows, not the table. Partitions fetched from remote storage (``pyarrow.fs``) are kept
    in a least-recently-used cache of at most ``cache_bytes``, so repeated gathers do not
    fetch them again while they fit. ``chunks(t)`` yields ``(ids [n], vectors [n, dim])``
    covering the type once, one partition (or slice) at a time.
    """

    def __init__(self, source, chunk_rows: int = 1 << 20, cache_bytes: int = 1 << 30):
        self.model: TwHIN | None = None
        self.tables, self.manifest = None, None
        self.chunk_rows = int(chunk_rows)
        if isinstance(source, TwHIN):
            self.model = source
        elif isinstance(source, tuple) and isinstance(source[0], PartitionTables):
            self.tables, self.manifest = source
        elif getattr(source, "tables", None) is not None:  # a partitioned run
            self.tables, self.manifest = source.tables, source.tables_manifest
        else:
            self.model = source.model
        self.dim = self.model.dim if self.model is not None else self.tables.dim
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[str, np.ndarray] = {}  # fetched arrays; insertion order = least recently used first

    def _read(self, name: str) -> np.ndarray:
        """Committed array ``name`` of the tables (memory-mapped when local; fetched ones cached)."""
        arr = self._cache.pop(name, None)
        if arr is None:
            arr = self.tables.read(name, self.manifest)
        if isinstance(arr, np.memmap) or arr.nbytes > self.cache_bytes:
            return arr  # a local file is mapped anew each time (cheap; nothing stays mapped)
        held = sum(a.nbytes for a in self._cache.values())
        while self._cache and held + arr.nbytes > self.cache_bytes:
            held -= self._cache.pop(next(iter(self._cache))).nbytes
        self._cache[name] = arr
        return arr

    def __repr__(self) -> str:
        return f"NodeVectors({self.model!r})" if self.model is not None else f"NodeVectors({self.tables!r})"

    def _table(self, t: str) -> np.ndarray:
        return self.model.node_embeddings(t).detach().numpy()

    def _by_partition(self, t: str, ids: np.ndarray):
        """``(partition, positions in ids, rows within the partition)`` for each partition the ids fall in."""
        part = self.tables.part
        p_of, off = part.part(t)[ids], part.offset(t)[ids]
        order = np.argsort(p_of, kind="stable")
        bounds = np.searchsorted(p_of[order], np.arange(part.parts(t) + 1))
        for p in range(part.parts(t)):
            sel = order[bounds[p] : bounds[p + 1]]
            if sel.size:
                yield p, sel, off[sel]

    def vectors(self, t: str, ids: np.ndarray) -> np.ndarray:
        """float32 ``[len(ids), dim]``: the vectors of nodes ``ids`` (internal ids of type ``t``)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.model is not None:
            return self._table(t)[ids].astype(np.float32, copy=False)
        out = np.empty((ids.shape[0], self.dim), np.float32)
        for p, sel, rows in self._by_partition(t, ids):
            out[sel] = self._read(self.tables.name(t, p, "emb"))[rows]
        return out

    def state(self, t: str, ids: np.ndarray) -> np.ndarray:
        """Partition tables only: the Adagrad accumulators of nodes ``ids`` (``[n, dim]``,
        or ``[n]`` under ``row_adagrad``)."""
        ids = np.asarray(ids, dtype=np.int64)
        shape = self.manifest.files[self.tables.name(t, 0, "sum")].shape[1:]  # (dim,) or () under row_adagrad
        out = np.empty((ids.shape[0], *shape), np.float32)
        for p, sel, rows in self._by_partition(t, ids):
            out[sel] = self._read(self.tables.name(t, p, "sum"))[rows]
        return out

    def chunks(self, t: str):
        """``(ids int64 [n], vectors float32 [n, dim])`` covering type ``t`` once."""
        if self.model is None:
            yield from ((np.asarray(ids, np.int64), emb) for ids, emb in self.tables.chunks(t, self.manifest))
            return
        table = self._table(t)
        for lo in range(0, table.shape[0], self.chunk_rows):
            hi = min(lo + self.chunk_rows, table.shape[0])
            yield np.arange(lo, hi, dtype=np.int64), table[lo:hi]


def matched_rows(store: GraphStore, previous_store: GraphStore, node_type: str) -> np.ndarray:
    """Each node of ``node_type`` in ``store``: its row in ``previous_store`` (by original
    id), ``-1`` for new nodes; all ``-1`` when the earlier graph lacks the type."""
    if node_type not in previous_store.node_types:
        return np.full(store.num_nodes(node_type), -1, dtype=np.int64)
    return previous_store.lookup(node_type, store.node_ids(node_type))


def previous_global_rows(model: TwHIN, store: GraphStore, previous: TwHIN, previous_store: GraphStore,
                         matched: dict[str, np.ndarray] | None = None) -> torch.Tensor:
    """``[total]`` int64: for each global row of ``model`` (for ``store``), the global row
    of the same node (type and original id) in ``previous`` (for ``previous_store``), or
    ``-1`` for a node the earlier run did not have. ``matched``: the types'
    :func:`matched_rows` when the caller has them (each is an id lookup over the type)."""
    source = torch.full((sum(model.num_nodes.values()),), -1, dtype=torch.long)
    for t in model.num_nodes:
        rows = matched[t] if matched is not None else matched_rows(store, previous_store, t)
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

    if (why := _other_optimizer(run, optimizer)) is not None:
        return None, why
    if getattr(run, "tables", None) is not None:  # a partitioned run: its Adagrad sums are in its tables
        return _state_from_tables(run), f"carried from its tables (version {run.tables_manifest.version})"
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


def _other_optimizer(run, optimizer: str) -> str | None:
    """Why the earlier run's optimizer state cannot be carried into ``optimizer``'s, or ``None``."""
    if run.config.optimizer == optimizer:
        return None
    return f"fresh (the earlier run trained with optimizer {run.config.optimizer!r}, this one with {optimizer!r})"


def _state_from_tables(run) -> list[dict]:
    """A partitioned run's Adagrad state as the two ``optimizer.state_dict()``s of an
    unpartitioned run (node table in global row order, relation table), for an
    unpartitioned warm start from it (whose tables fit in memory, as its own do)."""
    tables, m = run.tables, run.tables_manifest
    node = NodeVectors(run)
    parts = [torch.from_numpy(node.state(t, np.arange(n, dtype=np.int64))) for t, n in run.num_nodes.items()]
    rel = torch.from_numpy(np.array(tables.read(RELATIONS_SUM, m), dtype=np.float32))
    step = torch.tensor(0.0)
    return [{"state": {0: {"sum": torch.cat(parts), "step": step}}, "param_groups": [{"params": [0]}]},
            {"state": {0: {"sum": rel, "step": step}}, "param_groups": [{"params": [0]}]}]


def previous_table_state(run, optimizer: str, carry: bool = True):
    """The earlier run's optimizer state for a partitioned warm start (whose tables hold
    Adagrad sums): ``(node_state, relation_state, how)``, ``node_state(t, rows)`` the
    accumulator rows of nodes ``rows`` (the earlier run's ids of type ``t``) and
    ``relation_state [R_prev, d_r]``; ``(None, None, why not)`` when nothing is carried
    (``carry`` false, another optimizer, no checkpoint: :func:`previous_optimizer_state`).
    A partitioned earlier run's sums are read from its tables partition by partition; an
    unpartitioned one's from its last checkpoint."""
    if not carry:
        return None, None, "fresh (carry_optimizer_state: false)"
    if getattr(run, "tables", None) is not None:
        if (why := _other_optimizer(run, optimizer)) is not None:
            return None, None, why
        node = NodeVectors(run)
        rel = np.array(run.tables.read(RELATIONS_SUM, run.tables_manifest), dtype=np.float32)
        return node.state, rel, f"carried from its tables (version {run.tables_manifest.version})"
    model = run.model
    saved, how = previous_optimizer_state(run, optimizer, [model.node_emb.weight.shape[0], model.rel_emb.weight.shape[0]])
    if saved is None:
        return None, None, how
    node_sum = next(iter(saved[0]["state"].values()))["sum"]
    rel_sum = next(iter(saved[1]["state"].values()))["sum"].numpy()
    offsets = model.offsets
    return (lambda t, rows: node_sum[torch.from_numpy(np.asarray(rows, np.int64) + offsets[t])].numpy()), rel_sum, how


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


def neighbour_means(store: GraphStore, carried: dict[str, np.ndarray], vectors, dim: int,
                    chunk_edges: int = EDGE_CHUNK) -> dict[str, tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """The new nodes' starting vectors, ``x_v = Σ_{u ∈ N(v) ∩ old} x_u / |N(v) ∩ old|`` over
    every relation in either direction.

    Args:
        carried: bool ``[N_t]`` per node type: the node is carried from the earlier run.
        vectors: ``vectors(t, ids)`` float32 ``[n, dim]``, the carried nodes' vectors.

    Returns, per node type, ``(new_index [N_t] int64, sums [m, dim], counts [m])`` over its
    ``m`` new nodes: ``new_index[v]`` is node ``v``'s row (``-1`` for a carried node) and
    ``sums[i] / counts[i]`` its mean (``counts[i] == 0``: no carried neighbour). Each
    relation is read in CSR chunks of about ``chunk_edges`` edges (``index_add_`` per chunk),
    so memory holds the new nodes' sums and one chunk, never a whole edge list."""
    new_index, sums, counts = {}, {}, {}
    for t, c in carried.items():
        new = np.flatnonzero(~c)
        idx = np.full(c.shape[0], -1, dtype=np.int64)
        idx[new] = np.arange(new.size)
        new_index[t], sums[t], counts[t] = idx, torch.zeros((new.size, dim)), torch.zeros(new.size)
    for rel in store.relations():
        if rel.is_reverse or rel.src_type not in carried or rel.dst_type not in carried:
            continue
        indptr = np.asarray(rel.indptr)
        n_src, lo = indptr.shape[0] - 1, 0
        while lo < n_src:
            hi = int(np.searchsorted(indptr, indptr[lo] + chunk_edges, side="right")) - 1
            hi = min(max(hi, lo + 1), n_src)
            src = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(indptr[lo : hi + 1]))
            dst = np.asarray(rel.indices[indptr[lo] : indptr[hi]], dtype=np.int64)
            for a_t, a, b_t, b in ((rel.src_type, src, rel.dst_type, dst), (rel.dst_type, dst, rel.src_type, src)):
                sel = carried[a_t][a] & ~carried[b_t][b]  # b learns from a, where a is carried and b is not
                if sel.any():
                    rows = torch.from_numpy(new_index[b_t][b[sel]])
                    sums[b_t].index_add_(0, rows, torch.from_numpy(vectors(a_t, a[sel])))
                    counts[b_t].index_add_(0, rows, torch.ones(rows.shape[0]))
            lo = hi
    return {t: (new_index[t], sums[t], counts[t]) for t in carried}


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
    matched = {t: matched_rows(store, previous_store, t) for t in model.num_nodes}
    source = previous_global_rows(model, store, previous, previous_store, matched)
    carried = source >= 0
    weight[carried] = previous.node_emb.weight[source[carried]].to(weight.dtype)
    old = NodeVectors(previous)
    means = neighbour_means(store, {t: m >= 0 for t, m in matched.items()},
                            lambda t, ids: old.vectors(t, matched[t][ids]), model.dim)
    filled = 0
    for t, (new_index, sums, counts) in means.items():
        has = counts > 0
        rows = torch.from_numpy(np.flatnonzero(new_index >= 0) + model.offsets[t])[has]
        weight[rows] = (sums[has] / counts[has, None]).to(weight.dtype)
        filled += int(has.sum())
    counts = {"carried": int(carried.sum()), "from_neighbours": filled,
              "random": int((~carried).sum()) - filled, "relations": 0}
    for i, et in enumerate(model.edge_types):
        if et in previous.edge_types:
            model.rel_emb.weight[i] = previous.relation_embedding(et).to(weight.dtype)
            counts["relations"] += 1
    return source, counts


class PartitionWarmStart:
    """A warm start of a new partitioned run (``partitions > 1``) from an earlier TwHIN run
    of either kind, partition by partition: the ``fill`` of
    :meth:`graphrec.run.tables.PartitionTables.initialise`, so no table is ever whole in
    memory. The rules are :func:`warm_start`'s: a node the earlier run had (type and
    original id) starts from its vector there and, with its optimizer state carried,
    from its Adagrad accumulator; a new node from the mean of its carried neighbours
    (:func:`neighbour_means`), else random; relations the earlier run trained keep their
    vectors and accumulators.

    Memory: the id map ``[N]`` of every type, the new nodes' means, one partition."""

    def __init__(self, store: GraphStore, previous, optimizer: str, carry_state: bool = True):
        self.previous = previous
        self.old = NodeVectors(previous)
        self.matched = {t: matched_rows(store, previous.store, t) for t in store.node_types}
        self.means = neighbour_means(store, {t: m >= 0 for t, m in self.matched.items()},
                                     lambda t, ids: self.old.vectors(t, self.matched[t][ids]), self.old.dim)
        self.node_state, self.relation_state, self.optimizer = previous_table_state(previous, optimizer, carry_state)
        filled = sum(int((c > 0).sum()) for _, _, c in self.means.values())
        carried = sum(int((m >= 0).sum()) for m in self.matched.values())
        self.counts = {"carried": carried, "from_neighbours": filled,
                       "random": sum(m.shape[0] for m in self.matched.values()) - carried - filled, "relations": 0}

    def __repr__(self) -> str:
        return f"PartitionWarmStart(from={self.previous.dir!s}, {self.counts})"

    def relations(self, edge_types, emb: np.ndarray, state: np.ndarray) -> None:
        """Carry the earlier run's vectors (and accumulators) of the relations it trained into
        ``emb`` / ``state`` ``[R, d_r]`` (rows in ``edge_types`` order), in place."""
        old = self.previous.relation_vectors()
        index = {et: i for i, et in enumerate(old)}
        for i, et in enumerate(edge_types):
            if tuple(et) in index:
                emb[i] = old[tuple(et)].detach().numpy()
                if self.relation_state is not None:
                    state[i] = self.relation_state[index[tuple(et)]]
                self.counts["relations"] += 1

    def __call__(self, t: str, p: int, members: np.ndarray, emb: np.ndarray, state: np.ndarray) -> None:
        """Fill partition ``p`` of type ``t`` (global ids ``members``, rows in that order) in place."""
        rows = self.matched[t][members]
        known = np.flatnonzero(rows >= 0)
        if known.size:
            emb[known] = self.old.vectors(t, rows[known])
            if self.node_state is not None:
                state[known] = self.node_state(t, rows[known])
        new_index, sums, counts = self.means[t]
        at = new_index[members]
        new = np.flatnonzero(at >= 0)
        has = counts[torch.from_numpy(at[new])] > 0
        sel = torch.from_numpy(at[new])[has]
        emb[new[has.numpy()]] = (sums[sel] / counts[sel, None]).numpy()


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
def drift_report(model, store: GraphStore, previous, previous_store: GraphStore, k: int = 10,
                 max_queries: int = 1000, seed: int = 0, chunk: int = 16384) -> dict:
    """How far the nodes present in both runs moved: per node type and overall, the mean
    cosine of their two vectors and the mean overlap ``|kNN_old(v) ∩ kNN_new(v)| / k`` of
    their ``k`` nearest neighbours by cosine among those nodes of the type (for up to
    ``max_queries`` seeded sample nodes per type; types with ``≤ k`` such nodes report
    no overlap).

    ``model`` / ``previous``: anything :class:`NodeVectors` reads (a TwHIN, a finished run,
    partition tables). One pass per type streams the new run's vectors ``chunk`` rows at a
    time and gathers the same nodes' rows of the earlier run, so memory holds about
    ``chunk × (dim + max_queries)`` floats, never either table."""
    new_v = model if isinstance(model, NodeVectors) else NodeVectors(model)
    old_v = previous if isinstance(previous, NodeVectors) else NodeVectors(previous)
    per_type, cos_sum, cos_n, ov_sum, ov_n = {}, 0.0, 0, 0.0, 0
    rng = np.random.default_rng(seed)
    for t in store.node_types:
        rows = matched_rows(store, previous_store, t)
        both = np.flatnonzero(rows >= 0)
        if both.size == 0:
            continue
        q = both[np.sort(rng.choice(both.size, size=min(max_queries, both.size), replace=False))] \
            if both.size > k else None
        t_sum, knn = _type_drift(new_v, old_v, t, rows, q, k, chunk)
        entry = {"nodes": int(both.size), "mean_cosine": t_sum / both.size}
        cos_sum, cos_n = cos_sum + t_sum, cos_n + int(both.size)
        if knn is not None:
            a, b = knn
            frac = (a[:, :, None] == b[:, None, :]).any(2).float().mean(1)
            entry[f"knn_overlap@{k}"] = float(frac.mean())
            ov_sum, ov_n = ov_sum + float(frac.sum()), ov_n + int(q.size)
        per_type[t] = entry
    return {"nodes": cos_n, "mean_cosine": cos_sum / max(cos_n, 1),
            f"knn_overlap@{k}": ov_sum / ov_n if ov_n else None, "by_type": per_type,
            "definition": f"nodes present in both runs (same type and original id); mean cosine of their two vectors; "
                          f"overlap of their {k} nearest neighbours by cosine among those nodes, over up to "
                          f"{max_queries} sampled nodes per type"}


def _pairs(new_v: NodeVectors, old_v: NodeVectors, t: str, rows: np.ndarray, chunk: int):
    """``(ids [n], new unit vectors [n, dim], old unit vectors [n, dim])`` of the nodes of
    type ``t`` present in both runs (``rows >= 0``: their rows in the earlier run), ``n ≤
    chunk`` at a time, in the new run's storage order."""
    unit = torch.nn.functional.normalize
    for ids, emb in new_v.chunks(t):
        keep = np.flatnonzero(rows[ids] >= 0)
        for lo in range(0, keep.size, chunk):
            sel = keep[lo : lo + chunk]
            yield (ids[sel], unit(torch.from_numpy(np.asarray(emb[sel], np.float32)), dim=1),
                   unit(torch.from_numpy(old_v.vectors(t, rows[ids[sel]])), dim=1))


def _type_drift(new_v: NodeVectors, old_v: NodeVectors, t: str, rows: np.ndarray, queries: np.ndarray | None,
                k: int, chunk: int) -> tuple[float, tuple[torch.Tensor, torch.Tensor] | None]:
    """One pass over the nodes of type ``t`` present in both runs (``rows >= 0``): the sum
    of their two vectors' cosines and, for ``queries`` (node ids; ``None``: none), the
    ``([Q, k], [Q, k])`` ids of their ``k`` nearest (cosine) such nodes in the new run and
    in the old one, each query itself excluded; each chunk's top ``k`` is merged into the
    running best (``[Q, 2k]``)."""
    unit = torch.nn.functional.normalize
    cos_sum = 0.0
    if queries is not None:
        q_of = np.full(rows.shape[0], -1, dtype=np.int64)  # node id -> its query row
        q_of[queries] = np.arange(queries.size)
        zq = [unit(torch.from_numpy(new_v.vectors(t, queries)), dim=1),
              unit(torch.from_numpy(old_v.vectors(t, rows[queries])), dim=1)]
        best_s = [torch.full((queries.size, k), float("-inf")) for _ in range(2)]
        best_i = [torch.full((queries.size, k), -1, dtype=torch.long) for _ in range(2)]
    for ids, a, b in _pairs(new_v, old_v, t, rows, chunk):
        cos_sum += float((a * b).sum(1).double().sum())
        if queries is None:
            continue
        cand = torch.from_numpy(ids)
        own = np.flatnonzero(q_of[ids] >= 0)  # queries among the candidates: not their own neighbour
        for side, vec in enumerate((a, b)):
            s = zq[side] @ vec.T
            s[torch.from_numpy(q_of[ids[own]]), torch.from_numpy(own)] = float("-inf")
            top_s, top_pos = s.topk(min(k, s.shape[1]), dim=1)
            best_s[side], pos = torch.cat([best_s[side], top_s], 1).topk(k, dim=1)
            best_i[side] = torch.cat([best_i[side], cand[top_pos]], 1).gather(1, pos)
    return cos_sum, None if queries is None else (best_i[0], best_i[1])
