"""Queries against a built :class:`~graphrec.retrieval.index.Index`.

- :func:`similar_items`: item→item ("more like this"): the item's own indexed vector as
  the query (:meth:`~graphrec.retrieval.index.Index.item_queries`: through the score's
  candidate→query map where the candidate vector is not the node vector, e.g. TransE),
  the item itself left out;
- :func:`search_excluding`: the one top-``k`` search every query kind goes through (here
  and in :mod:`graphrec.retrieval.retriever`), excluded rows removed.
- :func:`recommend`: batch user→items: the users' query vectors (the export's
  ``retrieval/<query>/query.parquet``), top-``k`` by inner product with the items a
  user already engaged with in a graph removed — the key-value table
  (``user``, ``rank``, ``item``, ``score``) a serving system loads.

Unknown ids are reported (returned and logged), never a crash.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from graphrec.errors import GraphrecError
from graphrec.graph.csr import csr_rows
from graphrec.infer.export import read_vectors
from graphrec.io import atomic_file, resolve_portable
from graphrec.retrieval.index import IdPositions, Index

log = logging.getLogger(__name__)


def _report_unknown(kind: str, unknown) -> None:
    if len(unknown):
        shown = ", ".join(map(str, list(unknown)[:10]))
        log.warning("%d unknown %s id(s) skipped: %s%s", len(unknown), kind, shown, " …" if len(unknown) > 10 else "")


def search_excluding(index: Index, queries: np.ndarray, k: int, exclude_indptr: np.ndarray | None = None,
                     exclude_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each query with its excluded index rows left out: ``(scores [n, k]
    float32, rows [n, k] int64)``, padded with row ``-1`` (score ``-inf``) where fewer
    remain. Exclusions are CSR over the queries (``exclude_indptr [n + 1]``,
    ``exclude_rows`` index rows; negative rows ignored). One FAISS search for the whole
    batch, of ``k`` plus the longest exclusion list."""
    n = queries.shape[0]
    deg = np.diff(exclude_indptr) if exclude_indptr is not None else np.zeros(n, np.int64)
    extra = int(deg.max()) if n else 0
    scores, hits = index.search(queries, k + extra)
    mask = hits >= 0
    if extra:  # (query, row) keys of the excluded pairs against those of the hits
        q = np.repeat(np.arange(n, dtype=np.int64), deg)
        rows = np.asarray(exclude_rows, dtype=np.int64)
        ok = rows >= 0
        mask &= ~np.isin(np.arange(n, dtype=np.int64)[:, None] * index.count + hits, (q * index.count + rows)[ok])
    rank = np.cumsum(mask, axis=1)
    mask &= rank <= k
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    out_rows = np.full((n, k), -1, dtype=np.int64)
    r, c = np.nonzero(mask)
    out_scores[r, rank[r, c] - 1] = scores[r, c]
    out_rows[r, rank[r, c] - 1] = hits[r, c]
    return out_scores, out_rows


def similar_rows(index: Index, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Item→item for index ``rows`` (``[n]``): :func:`search_excluding` of their
    :meth:`~Index.item_queries`, each row itself left out."""
    rows = np.asarray(rows, dtype=np.int64)
    queries = index.item_queries(np.asarray(index.vectors[rows]))
    return search_excluding(index, queries, k, np.arange(rows.shape[0] + 1, dtype=np.int64), rows)


def similar_items(index: Index, ids, k: int = 10) -> tuple[pd.DataFrame, list]:
    """Top-``k`` neighbours of each known id: ``(DataFrame[query, rank, id, score],
    unknown ids)``."""
    ids = np.asarray(ids)
    rows, known = index.lookup(ids)
    unknown = list(ids[~known])
    _report_unknown(index.manifest["target"], unknown)
    rows, qids = rows[known], ids[known]
    scores, hits = similar_rows(index, rows, k)
    r, c = np.nonzero(hits >= 0)
    return pd.DataFrame({"query": qids[r], "rank": c + 1, "id": index.ids[hits[r, c]], "score": scores[r, c]}), unknown


def read_id_list(path: str | Path) -> np.ndarray:
    """User ids from a file: Parquet/CSV (first column, or ``id``/``user``) or plain
    text, one id per line."""
    path = Path(path)
    if not path.is_file():
        raise GraphrecError(f"{path}: no such users file")
    if path.suffix == ".parquet":
        t = pq.read_table(path)
        col = next((c for c in ("id", "user") if c in t.column_names), t.column_names[0])
        return t.column(col).to_numpy(zero_copy_only=False)
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str)
        col = next((c for c in ("id", "user") if c in df.columns), df.columns[0])
        return df[col].to_numpy()
    return np.array([line.strip() for line in path.read_text().splitlines() if line.strip()], dtype=object)


def query_vectors(index: Index, embeddings: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [U], vectors [U, dim])``: the query vectors of the index's ``query``
    relation, from ``embeddings`` (default: the directory the index was built from)."""
    from graphrec.retrieval.index import _emb_manifest

    man = index.manifest
    if not man.get("query"):
        raise GraphrecError(f"{index.dir}: built without --query src:rel:dst, so it has no user query vectors "
                            "(rebuild it with `graphrec index --query user:rel:item`)")
    emb = Path(embeddings) if embeddings else embeddings_dir(index)
    retr = _emb_manifest(emb).get("retrieval", {})
    if man["query"] not in retr:
        raise GraphrecError(f"{emb}: no retrieval vectors for {man['query']} (the index's query relation)")
    qids, qvecs = read_vectors(emb / retr[man["query"]]["path"] / "query.parquet")
    index.check_dim(qvecs, f"{emb} ({man['query']} queries)")
    return qids, qvecs


def embeddings_dir(index: Index) -> Path:
    """The embedding directory the index was built from (absolute path, else the same
    relative place)."""
    man = index.manifest
    return resolve_portable({"path": man["embeddings"], "relpath": man.get("embeddings_relpath")}, index.dir)


class SeenItems:
    """The items each query user engaged with in a graph, as index rows, to leave out of
    their recommendations: ``seen(query_rows [n]) -> (indptr [n + 1], rows)`` (CSR over
    the given rows of ``qids``; users or items the graph or index lacks give nothing).

    The edges are those of the index's ``query`` relation in ``graph`` (memory-mapped;
    ``O(U + N)`` id maps besides)."""

    def __init__(self, index: Index, qids: np.ndarray, graph: str | Path):
        from graphrec.graph.store import GraphStore, parse_edge_type

        et = parse_edge_type(index.manifest["query"])
        store = GraphStore(graph)
        if et not in store.edge_types:
            raise GraphrecError(f"--exclude-seen {graph}: graph has no relation {index.manifest['query']}")
        rel = store.relation(et)
        src, _, dst = et
        self.graph = store.path
        self.user_row = np.asarray(store.lookup(src, pa.array(qids)), dtype=np.int64)  # query row -> store row
        self.item_row = index.lookup(store.original_ids(dst))[0]  # store item -> index row (-1: not indexed)
        self.indptr, self.indices = np.asarray(rel.indptr), rel.indices

    def __call__(self, query_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        su = self.user_row[np.asarray(query_rows, dtype=np.int64)]
        known = su >= 0
        deg = np.zeros(su.shape[0], dtype=np.int64)
        deg[known] = self.indptr[su[known] + 1] - self.indptr[su[known]]
        _, items = csr_rows(self.indptr, self.indices, su[known])
        return np.concatenate([[0], np.cumsum(deg)]), self.item_row[items]


def recommend(index: Index, out: str | Path, users=None, k: int = 100, exclude_seen: str | Path | None = None,
              embeddings: str | Path | None = None, batch_size: int = 4096, overwrite: bool = False,
              progress: bool = True) -> dict:
    """Write ``out`` (Parquet: ``user``, ``rank``, ``item``, ``score``) with the top-``k``
    items of each user (all users with ``users=None``); returns counts and the unknown ids.

    Query vectors come from the index's ``query`` relation in ``embeddings`` (default:
    the directory the index was built from); ``exclude_seen``: a graph store whose edges
    of that relation are removed from each user's list.
    """
    qids, qvecs = query_vectors(index, embeddings)
    if users is None:
        sel, unknown = np.arange(qids.shape[0]), []
    else:
        users = np.asarray(users)
        sel, known = IdPositions(qids)(users)
        unknown = list(users[~known])
        sel = sel[sel >= 0]
        _report_unknown("user", unknown)
    seen = SeenItems(index, qids, exclude_seen) if exclude_seen is not None else None
    schema = pa.schema([("user", pa.array(qids[:0]).type), ("rank", pa.int32()), ("item", pa.array(index.ids[:0]).type),
                        ("score", pa.float32())])
    n_rows = 0
    with atomic_file(out, overwrite=overwrite) as tmp, pq.ParquetWriter(tmp, schema) as w:
        for lo in tqdm(range(0, sel.shape[0], batch_size), desc="recommend", disable=not progress, unit="batch"):
            b = sel[lo:lo + batch_size]
            excl = seen(b) if seen is not None else (None, None)
            scores, hits = search_excluding(index, qvecs[b], k, *excl)
            r, c = np.nonzero(hits >= 0)
            w.write_table(pa.table({"user": pa.array(qids[b][r]), "rank": pa.array((c + 1).astype(np.int32)),
                                    "item": pa.array(index.ids[hits[r, c]]), "score": pa.array(scores[r, c])},
                                   schema=schema))
            n_rows += r.shape[0]
    log.info("wrote %d recommendations for %d users -> %s", n_rows, sel.shape[0], out)
    return {"users": int(sel.shape[0]), "rows": n_rows, "unknown_users": [str(u) for u in unknown]}
