"""Embedding export for downstream retrieval (the format every graphrec model writes).

``EMB_DIR/``
  ``nodes/<node_type>.parquet``   ``id`` (original id, exactly as in the input table),
                                  ``embedding`` (fixed-size list<float32>)
  ``relations.parquet``           ``relation`` (``src:rel:dst``), ``embedding``
  ``retrieval/<src>__<rel>__<dst>/query.parquet``, ``candidate.parquet``
                                  ``id``, ``embedding``: ``dot(query, candidate)`` orders
                                  the candidates of each query exactly as the model does
  ``manifest.json``               model, score function, dims, counts, graph checksum,
                                  training metrics, files

Every file holds each node of its type exactly once, identified by its original ``id``;
**row order is not part of the format**: a partitioned TwHIN run's files follow its
partitions (the order its tables stream in), an unpartitioned run's the store's internal
ids. Readers match rows by id (:func:`read_vectors_by_internal_id` gives the store's
order; ``graphrec index`` / ``search`` / ``recommend`` key everything by id).

Written into a temporary directory renamed into place, chunk by chunk
(:class:`NodeVectors`: ``(internal ids, vectors)`` chunks, each written as Parquet row
groups of :func:`row_group_rows` rows — about ``ROW_GROUP_BYTES`` of vectors — with ids
looked up in the store per chunk), and retrieval vectors are computed per chunk too, so
memory holds one chunk — for a partitioned run one partition plus a row group — never a
whole table. (Arrow's Parquet writer needs about 1.5× a row group's vectors to encode
it: repetition/definition levels of every coordinate plus the encoded pages.)
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore, parse_edge_type, relation_key
from graphrec.io import atomic_dir, write_json
from graphrec.run.directory import TwHINRun, open_run, run_model

log = logging.getLogger(__name__)

ROW_GROUP = 1 << 20  # most rows in a row group (small dimensions)
ROW_GROUP_BYTES = 64 << 20  # vectors in a row group, about (what bounds the writer's memory)


def row_group_rows(dim: int) -> int:
    """Rows per Parquet row group for vectors of ``dim`` float32: ``ROW_GROUP_BYTES /
    (4·dim)`` within ``[1024, ROW_GROUP]`` (131,072 rows at ``dim`` 128)."""
    return int(min(ROW_GROUP, max(1024, ROW_GROUP_BYTES // (4 * max(int(dim), 1)))))


Chunk = tuple[np.ndarray, "np.ndarray | torch.Tensor"]


@dataclass(frozen=True)
class NodeVectors:
    """The vectors of every node of one type, as chunks: ``chunks()`` yields
    ``(internal ids int64 [n], vectors [n, dim])`` (numpy or torch, float32) that cover
    each node of the type exactly once, in any order."""

    dim: int
    chunks: Callable[[], Iterable[Chunk]]

    @classmethod
    def from_array(cls, vectors) -> NodeVectors:
        """A table ``[N, d]`` (numpy, memory-mapped or torch) in internal-id order, served
        in slices of :func:`row_group_rows` rows."""
        n, step = int(vectors.shape[0]), row_group_rows(int(vectors.shape[1]))

        def chunks() -> Iterator[Chunk]:
            for lo in range(0, n, step):
                hi = min(lo + step, n)
                yield np.arange(lo, hi, dtype=np.int64), vectors[lo:hi]

        return cls(int(vectors.shape[1]), chunks)

    @classmethod
    def of(cls, v) -> NodeVectors:
        return v if isinstance(v, NodeVectors) else cls.from_array(v)


def _fixed_list(mat: np.ndarray) -> pa.FixedSizeListArray:
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1)), mat.shape[1])


def write_vector_chunks(path: Path, chunks: Iterable[tuple[pa.Array, np.ndarray | torch.Tensor]], dim: int,
                        id_type: pa.DataType, id_name: str = "id", bar=None) -> int:
    """Write ``(ids [n], vectors [n, dim])`` chunks as ``(id_name, embedding)`` rows to
    Parquet, each chunk as row groups of at most :func:`row_group_rows` rows; returns the
    row count."""
    schema = pa.schema([(id_name, id_type), ("embedding", pa.list_(pa.float32(), dim))])
    step = row_group_rows(dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(path, schema) as w:
        for ids, vectors in chunks:
            if isinstance(vectors, torch.Tensor):
                vectors = vectors.detach().cpu().numpy()
            n = len(ids)
            if vectors.ndim != 2 or vectors.shape != (n, dim):
                raise ValueError(f"{path}: a chunk of {n} ids has vectors of shape {tuple(vectors.shape)}, "
                                 f"expected ({n}, {dim})")
            for lo in range(0, n, step):
                part = vectors[lo : lo + step]
                w.write_table(pa.table({id_name: ids.slice(lo, part.shape[0]), "embedding": _fixed_list(part)},
                                       schema=schema))
            rows += n
            if bar is not None:
                bar.update(n)
        if rows == 0:
            w.write_table(schema.empty_table())
    return rows


def write_vectors(path: Path, ids: pa.Array, vectors, id_name: str = "id") -> int:
    """Write ``(id, embedding)`` rows (``ids [N]``, ``vectors [N, d]``) to Parquet in row
    groups; returns the row count."""
    n = len(ids)
    if vectors.shape[0] != n:
        raise ValueError(f"{path}: {n} ids but {vectors.shape[0]} vectors")
    dim = int(vectors.shape[1])
    step = row_group_rows(dim)
    chunks = ((ids.slice(lo, step), vectors[lo : lo + step]) for lo in range(0, n, step))
    return write_vector_chunks(path, chunks, dim, ids.type, id_name)


def write_node_vectors(path: Path, store: GraphStore, node_type: str, vectors: NodeVectors,
                       progress: bool = False) -> int:
    """Write every node of ``node_type`` (``id`` = its original id in ``store``) from
    ``vectors``' chunks, in their order; checks that they cover each node exactly once
    (a ``ValueError`` otherwise). Returns the row count."""
    n = store.num_nodes(node_type)
    original = store.node_ids(node_type)
    seen = np.zeros(n, dtype=bool)

    def chunks():
        for internal, vecs in vectors.chunks():
            internal = np.asarray(internal, dtype=np.int64)
            if internal.size and (int(internal.min()) < 0 or int(internal.max()) >= n):
                raise ValueError(f"{path}: internal ids outside [0, {n}) of node type {node_type!r}")
            seen[internal] = True
            yield original.take(pa.array(internal)), vecs

    t0 = time.perf_counter()
    with tqdm(total=n, desc=str(Path(*path.parts[-2:])), unit="vec", unit_scale=True, disable=not progress,
              leave=False) as bar:
        rows = write_vector_chunks(path, chunks(), vectors.dim, original.type, bar=bar)
    if rows != n or not seen.all():  # n rows covering all n ids: each exactly once
        raise ValueError(f"{path}: {rows} rows for the {n} nodes of {node_type!r}, {n - int(seen.sum())} of them "
                         "missing")
    seconds = time.perf_counter() - t0
    log.info("%s: %d vectors in %.1fs (%.0f vectors/s)", path.name, rows, seconds, rows / max(seconds, 1e-9))
    return rows


def read_vectors(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, embeddings float32 [N, d])`` of an exported Parquet file, in file order
    (which is not the store's internal-id order for every run: see the module docstring)."""
    t = pq.read_table(path)
    emb = t.column("embedding").combine_chunks()
    dim = emb.type.list_size
    vecs = emb.flatten().to_numpy().reshape(-1, dim)
    return t.column(t.schema.names[0]).to_numpy(), vecs


def read_vectors_by_internal_id(path: str | Path, store: GraphStore, node_type: str) -> np.ndarray:
    """The vectors of an exported file as ``[N_T, d]`` with row ``i`` = internal id ``i``
    of ``node_type`` in ``store`` (rows matched by original id, whatever the file's
    order); :class:`GraphrecError` unless the file holds each node of the type once."""
    ids, vecs = read_vectors(path)
    n = store.num_nodes(node_type)
    internal = store.lookup(node_type, ids)
    if ids.shape[0] != n or (internal < 0).any() or np.unique(internal).shape[0] != n:
        raise GraphrecError(f"{path}: does not hold each of the {n} {node_type!r} nodes of {store.path} exactly once "
                            f"({ids.shape[0]} rows, {int((internal < 0).sum())} unknown ids)")
    out = np.empty_like(vecs)
    out[internal] = vecs
    return out


def export_embeddings(out: str | Path, store: GraphStore, node_vectors: dict, manifest: dict,
                      relation_vectors: dict | None = None, retrieval: dict | None = None,
                      overwrite: bool = False, progress: bool = False) -> Path:
    """Write an embedding directory.

    ``node_vectors``: ``{node_type: NodeVectors | [N_T, d] in the store's internal-id
    order}``; ``relation_vectors``: ``{edge_type: [d_r]}``; ``retrieval``: ``{edge_type:
    (query, candidate)}``, each a :class:`NodeVectors` or an array (``[N_src, d']``,
    ``[N_dst, d']``); ``manifest``: model facts to record.
    """
    files, counts = [], {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for t, vecs in node_vectors.items():
            counts[t] = write_node_vectors(tmp / "nodes" / f"{t}.parquet", store, t, NodeVectors.of(vecs), progress)
            files.append(f"nodes/{t}.parquet")
        if relation_vectors:
            names = [":".join(et) for et in relation_vectors]
            mat = np.stack([np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, np.float32)
                            for v in relation_vectors.values()])
            write_vectors(tmp / "relations.parquet", pa.array(names, pa.string()), mat, id_name="relation")
            files.append("relations.parquet")
        retr = {}
        for et, (query, cand) in (retrieval or {}).items():
            src_type, _, dst_type = et
            query, cand = NodeVectors.of(query), NodeVectors.of(cand)
            base = Path("retrieval") / relation_key(et)
            queries = write_node_vectors(tmp / base / "query.parquet", store, src_type, query, progress)
            candidates = write_node_vectors(tmp / base / "candidate.parquet", store, dst_type, cand, progress)
            files += [str(base / "query.parquet"), str(base / "candidate.parquet")]
            retr[":".join(et)] = {"path": str(base), "dim": query.dim, "queries": queries, "candidates": candidates,
                                  "metric": "inner_product"}
        full = {"format": "graphrec-embeddings", "format_version": 1, **manifest,
                "graph": str(store.path), "graph_checksum": store.checksum, "node_counts": counts,
                "retrieval": retr, "files": files}
        write_json(tmp / "manifest.json", full)
    log.info("exported %d node types, %d retrieval relations -> %s", len(node_vectors), len(retr), out)
    return Path(out)


def _tensor(chunk) -> torch.Tensor:
    """A float32 tensor over ``chunk`` without copying (tables are read-only memory maps;
    the retrieval transforms never write to their input)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(chunk, dtype=np.float32))


def _twhin_vectors(run: TwHINRun, node_type: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> NodeVectors:
    """The node vectors of ``node_type`` streamed from ``run`` (any TwHIN run, one code
    path), optionally through a row-wise ``transform`` ``[n, d] -> [n, d']`` per chunk."""
    if transform is None:
        return NodeVectors(run.dim, lambda: run.node_vector_chunks(node_type, row_group_rows(run.dim)))
    with torch.no_grad():
        dim = int(transform(torch.zeros(0, run.dim)).shape[1])

    def chunks() -> Iterator[Chunk]:
        for ids, emb in run.node_vector_chunks(node_type, row_group_rows(dim)):
            with torch.no_grad():
                yield ids, transform(_tensor(emb))

    return NodeVectors(dim, chunks)


def export_twhin(run_dir: str | Path, out: str | Path, retrieval: list[str] | None = None,
                 graph: str | Path | None = None, overwrite: bool = False, progress: bool = False) -> Path:
    """Export a finished TwHIN run, unpartitioned or partitioned, through one streaming
    path (:meth:`~graphrec.run.directory.TwHINRun.node_vector_chunks`): node vectors and
    retrieval vectors (:meth:`~graphrec.models.scores.ScoreFunction.retrieval_queries` /
    ``retrieval_candidates``, applied per chunk) are written chunk by chunk; a
    partitioned run's tables are read one partition at a time and never assembled, so
    memory stays bounded by one partition plus a row group. Same files, schema and
    manifest for both kinds; rows of a partitioned run follow its partitions.

    ``retrieval``: ``src:rel:dst`` relations to write query/candidate vectors for
    (default: every trained relation whose source type is ``user``; skipped with a
    warning when the score function has no inner-product form)."""
    run = open_run(run_dir, graph, expect="twhin")
    info, store, score = run.info, run.store, run.score_fn
    trained = run.edge_types
    if retrieval:
        wanted = []
        for text in retrieval:
            try:
                et = parse_edge_type(text)
            except ValueError as err:
                raise GraphrecError(f"--retrieval: {err}") from None
            if et not in trained:
                raise GraphrecError(f"--retrieval {text}: relation not trained in {run_dir} "
                                    f"(trained: {[':'.join(e) for e in trained]})")
            wanted.append(et)
        if not score.has_inner_product_form:
            raise GraphrecError(
                f"score function {score!r} has no exact inner-product form, so its retrieval vectors would "
                "rank candidates differently from the model; export retrieval vectors only for translation_dot, "
                "transe (p=2), distmult or complex")
    else:
        wanted = [(s, r, d) for s, r, d in trained if s == "user"]
        if wanted and not score.has_inner_product_form:
            log.warning("score %r has no inner-product form: no retrieval vectors exported", score)
            wanted = []
    rels = run.relation_vectors()
    nodes = {t: _twhin_vectors(run, t) for t in run.node_types}
    retr = {}
    for et in wanted:
        r = rels[et]
        retr[et] = (_twhin_vectors(run, et[0], lambda h, r=r: score.retrieval_queries(h, r)),
                    _twhin_vectors(run, et[2], score.retrieval_candidates))
    relation_dim = int(next(iter(rels.values())).shape[0]) if rels else score.relation_dim(run.dim)
    manifest = {"model": "twhin", "score": info["config"]["score"], "p_norm": info["config"]["p_norm"],
                "dim": run.dim, "relation_dim": relation_dim, "run": str(Path(run_dir).resolve()),
                # a query from items alone (`graphrec serve`'s POST /recommend): TwHIN learns no
                # item→user map, so the items' mean candidate vector, through candidate_queries
                "session_queries": {"half_life": None},
                "training": {k: v for k, v in info["summary"].items() if k != "history"},
                "final_epoch": info["summary"]["history"][-1] if info["summary"]["history"] else None}
    return export_embeddings(out, store, nodes, manifest, rels, retr, overwrite=overwrite, progress=progress)


def export_pinsage(run_dir: str | Path, out: str | Path, retrieval: list[str] | None = None,
                   graph: str | Path | None = None, inference: str | Path | None = None,
                   overwrite: bool = False, progress: bool = False) -> Path:
    """Export a finished PinSage run: ``nodes/<item_type>.parquet`` (item vectors),
    ``nodes/<user_type>.parquet`` (user vectors) and retrieval vectors of the
    interaction relation (query = user vectors, candidate = item vectors: PinSage scores
    by dot product, so they are the node vectors themselves). ``inference``: a finished
    :func:`graphrec.infer.layerwise.infer_pinsage` directory to take the vectors from
    (default: those computed at the end of training)."""
    if inference is not None and graph is not None:
        from graphrec.infer.layerwise import inference_graph

        if inference_graph(inference) is not None:
            raise GraphrecError(f"--graph: {inference} embeds the graph `graphrec infer --graph` named; leave --graph out")
    run = open_run(run_dir, graph, expect="pinsage")
    info, cfg = run.info, run.config
    inter = parse_edge_type(cfg.interactions)
    if retrieval:
        for text in retrieval:
            try:
                et = parse_edge_type(text)
            except ValueError as err:
                raise GraphrecError(f"--retrieval: {err}") from None
            if et != inter:
                raise GraphrecError(f"--retrieval {text}: a PinSage run scores only its interaction relation "
                                    f"{cfg.interactions}")
    users, items = run.user_vectors, run.item_vectors
    source = "end of training (in-memory layer-wise pass)"
    store = run.store
    if inference is not None:
        from graphrec.infer.layerwise import read_inference

        users, items, newer = read_inference(inference, run)
        source = f"sharded layer-wise inference ({Path(inference).resolve()})"
        if newer is not None:  # an inductive inference: the ids are that graph's
            store = newer
            source += f" of the graph {newer.path.resolve()}"
    nodes = {cfg.item_type: items, info["user_type"]: users}
    manifest = {"model": "pinsage", "score": "dot", "dim": int(items.shape[1]), "run": str(Path(run_dir).resolve()),
                "item_vectors": source,
                "user_vectors": ("recency-weighted mean of the user's item vectors, half-life "
                                 f"{cfg.user_vectors.half_life} interactions" if cfg.user_vectors.half_life
                                 else "mean of the user's item vectors"),
                # a query from items alone (`graphrec serve`'s POST /recommend): the recency recipe
                # of the user vectors (a learned-user run's new users get the same)
                "session_queries": {"half_life": cfg.user_vectors.half_life},
                "training": {k: v for k, v in info["summary"].items() if k != "history"},
                "final_epoch": info["summary"]["history"][-1] if info["summary"]["history"] else None}
    return export_embeddings(out, store, nodes, manifest, retrieval={inter: (users, items)}, overwrite=overwrite,
                             progress=progress)


def export_run(run_dir: str | Path, out: str | Path, retrieval: list[str] | None = None,
               graph: str | Path | None = None, inference: str | Path | None = None, overwrite: bool = False,
               progress: bool = False) -> Path:
    """Export a finished run of any model (dispatch on its ``run.json``); ``progress``:
    a progress bar per file."""
    if run_model(run_dir) == "pinsage":
        return export_pinsage(run_dir, out, retrieval=retrieval, graph=graph, inference=inference, overwrite=overwrite,
                              progress=progress)
    if inference is not None:
        raise GraphrecError("--inference applies to PinSage runs only (TwHIN embeddings are the trained tables)")
    return export_twhin(run_dir, out, retrieval=retrieval, graph=graph, overwrite=overwrite, progress=progress)
