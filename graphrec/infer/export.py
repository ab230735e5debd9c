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

Written into a temporary directory renamed into place; rows are written in row groups
of ``ROW_GROUP`` so memory stays bounded by a chunk, not the table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore, parse_edge_type, relation_key
from graphrec.io import atomic_dir, write_json
from graphrec.run.directory import open_run, run_model

log = logging.getLogger(__name__)

ROW_GROUP = 1 << 20


def _fixed_list(mat: np.ndarray) -> pa.FixedSizeListArray:
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1)), mat.shape[1])


def write_vectors(path: Path, ids: pa.Array, vectors, id_name: str = "id") -> int:
    """Write ``(id, embedding)`` rows to Parquet in row groups; returns the row count."""
    n = len(ids)
    if vectors.shape[0] != n:
        raise ValueError(f"{path}: {n} ids but {vectors.shape[0]} vectors")
    dim = vectors.shape[1]
    schema = pa.schema([(id_name, ids.type), ("embedding", pa.list_(pa.float32(), dim))])
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, max(n, 1), ROW_GROUP):
            chunk = vectors[start : start + ROW_GROUP]
            if isinstance(chunk, torch.Tensor):
                chunk = chunk.detach().cpu().numpy()
            w.write_table(pa.table({id_name: ids.slice(start, chunk.shape[0]), "embedding": _fixed_list(chunk)}, schema=schema))
    return n


def read_vectors(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, embeddings float32 [N, d])`` of an exported Parquet file."""
    t = pq.read_table(path)
    emb = t.column("embedding").combine_chunks()
    dim = emb.type.list_size
    vecs = emb.flatten().to_numpy().reshape(-1, dim)
    return t.column(t.schema.names[0]).to_numpy(), vecs


def export_embeddings(out: str | Path, store: GraphStore, node_vectors: dict, manifest: dict,
                      relation_vectors: dict | None = None, retrieval: dict | None = None,
                      overwrite: bool = False) -> Path:
    """Write an embedding directory.

    ``node_vectors``: ``{node_type: [N_T, d]}`` in the store's internal-id order;
    ``relation_vectors``: ``{edge_type: [d_r]}``; ``retrieval``: ``{edge_type: (query
    [N_src, d'], candidate [N_dst, d'])}``; ``manifest``: model facts to record.
    """
    files, counts = [], {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for t, vecs in node_vectors.items():
            counts[t] = write_vectors(tmp / "nodes" / f"{t}.parquet", store.node_ids(t), vecs)
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
            base = Path("retrieval") / relation_key(et)
            write_vectors(tmp / base / "query.parquet", store.node_ids(src_type), query)
            write_vectors(tmp / base / "candidate.parquet", store.node_ids(dst_type), cand)
            files += [str(base / "query.parquet"), str(base / "candidate.parquet")]
            retr[":".join(et)] = {"path": str(base), "dim": int(query.shape[1]), "queries": int(query.shape[0]),
                                  "candidates": int(cand.shape[0]), "metric": "inner_product"}
        full = {"format": "graphrec-embeddings", "format_version": 1, **manifest,
                "graph": str(store.path), "graph_checksum": store.checksum, "node_counts": counts,
                "retrieval": retr, "files": files}
        write_json(tmp / "manifest.json", full)
    log.info("exported %d node types, %d retrieval relations -> %s", len(node_vectors), len(retr), out)
    return Path(out)


def export_twhin(run_dir: str | Path, out: str | Path, retrieval: list[str] | None = None,
                 graph: str | Path | None = None, overwrite: bool = False) -> Path:
    """Export a finished TwHIN run. ``retrieval``: ``src:rel:dst`` relations to write
    query/candidate vectors for (default: every trained relation whose source type is
    ``user``; skipped with a warning when the score function has no inner-product form)."""
    run = open_run(run_dir, graph, expect="twhin")
    model, info, store = run.model, run.info, run.store
    trained = [tuple(e) for e in model.edge_types]
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
        if not model.score_fn.has_inner_product_form:
            raise GraphrecError(
                f"score function {model.score_fn!r} has no exact inner-product form, so its retrieval vectors would "
                "rank candidates differently from the model; export retrieval vectors only for translation_dot, "
                "transe (p=2), distmult or complex")
    else:
        wanted = [(s, r, d) for s, r, d in trained if s == "user"]
        if wanted and not model.score_fn.has_inner_product_form:
            log.warning("score %r has no inner-product form: no retrieval vectors exported", model.score_fn)
            wanted = []
    with torch.no_grad():
        nodes = {t: model.node_embeddings(t) for t in model.node_types}
        rels = {et: model.relation_embedding(et) for et in trained}
        retr = {et: model.retrieval_vectors(et) for et in wanted}
    manifest = {"model": "twhin", "score": info["config"]["score"], "p_norm": info["config"]["p_norm"],
                "dim": model.dim, "relation_dim": int(model.rel_emb.weight.shape[1]), "run": str(Path(run_dir).resolve()),
                "training": {k: v for k, v in info["summary"].items() if k != "history"},
                "final_epoch": info["summary"]["history"][-1] if info["summary"]["history"] else None}
    return export_embeddings(out, store, nodes, manifest, rels, retr, overwrite=overwrite)


def export_pinsage(run_dir: str | Path, out: str | Path, retrieval: list[str] | None = None,
                   graph: str | Path | None = None, inference: str | Path | None = None,
                   overwrite: bool = False) -> Path:
    """Export a finished PinSage run: ``nodes/<item_type>.parquet`` (item vectors),
    ``nodes/<user_type>.parquet`` (user vectors) and retrieval vectors of the
    interaction relation (query = user vectors, candidate = item vectors: PinSage scores
    by dot product, so they are the node vectors themselves). ``inference``: a finished
    :func:`graphrec.infer.layerwise.infer_pinsage` directory to take the vectors from
    (default: those computed at the end of training)."""
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
    if inference is not None:
        from graphrec.infer.layerwise import OUTPUT, STATE_FILE, model_fingerprint

        inf = Path(inference)
        state = json.loads((inf / STATE_FILE).read_text()) if (inf / STATE_FILE).is_file() else None
        if state is None or not (inf / "user_embeddings.npy").is_file():
            raise GraphrecError(f"--inference {inf}: not a finished `graphrec infer` directory")
        if state["fingerprint"] != model_fingerprint(run.model):
            raise GraphrecError(f"--inference {inf}: computed with another model than {run_dir}'s")
        items, users = np.load(inf / OUTPUT, mmap_mode="r"), np.load(inf / "user_embeddings.npy", mmap_mode="r")
        source = f"sharded layer-wise inference ({inf.resolve()})"
    nodes = {cfg.item_type: items, info["user_type"]: users}
    manifest = {"model": "pinsage", "score": "dot", "dim": int(items.shape[1]), "run": str(Path(run_dir).resolve()),
                "item_vectors": source,
                "user_vectors": ("recency-weighted mean of the user's item vectors, half-life "
                                 f"{cfg.user_vectors.half_life} interactions" if cfg.user_vectors.half_life
                                 else "mean of the user's item vectors"),
                "training": {k: v for k, v in info["summary"].items() if k != "history"},
                "final_epoch": info["summary"]["history"][-1] if info["summary"]["history"] else None}
    return export_embeddings(out, run.store, nodes, manifest, retrieval={inter: (users, items)}, overwrite=overwrite)


def export_run(run_dir: str | Path, out: str | Path, retrieval: list[str] | None = None,
               graph: str | Path | None = None, inference: str | Path | None = None, overwrite: bool = False) -> Path:
    """Export a finished run of any model (dispatch on its ``run.json``)."""
    if run_model(run_dir) == "pinsage":
        return export_pinsage(run_dir, out, retrieval=retrieval, graph=graph, inference=inference, overwrite=overwrite)
    if inference is not None:
        raise GraphrecError("--inference applies to PinSage runs only (TwHIN embeddings are the trained tables)")
    return export_twhin(run_dir, out, retrieval=retrieval, graph=graph, overwrite=overwrite)
