"""Queries against a built :class:`~graphrec.retrieval.index.Index`.

- :func:`similar_items`: item→item ("more like this"): the item's own indexed vector as
  the query, the item itself left out.
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
from graphrec.infer.export import read_vectors
from graphrec.io import atomic_file, resolve_portable
from graphrec.retrieval.index import IdPositions, Index

log = logging.getLogger(__name__)


def _report_unknown(kind: str, unknown) -> None:
    if len(unknown):
        shown = ", ".join(map(str, list(unknown)[:10]))
        log.warning("%d unknown %s id(s) skipped: %s%s", len(unknown), kind, shown, " …" if len(unknown) > 10 else "")


def similar_items(index: Index, ids, k: int = 10) -> tuple[pd.DataFrame, list]:
    """Top-``k`` neighbours of each known id: ``(DataFrame[query, rank, id, score],
    unknown ids)``."""
    ids = np.asarray(ids)
    rows, known = index.lookup(ids)
    unknown = list(ids[~known])
    _report_unknown(index.manifest["target"], unknown)
    rows, qids = rows[known], ids[known]
    if rows.size == 0:
        return pd.DataFrame({"query": [], "rank": [], "id": [], "score": []}), unknown
    scores, hits = index.search(np.asarray(index.vectors[rows]), k + 1)
    keep = (hits != rows[:, None]) & (hits >= 0)
    out = []
    for q, s, h, m in zip(qids, scores, hits, keep, strict=True):  # k+1 per query: small
        s, h = s[m][:k], h[m][:k]
        out.append(pd.DataFrame({"query": q, "rank": np.arange(1, len(h) + 1), "id": index.ids[h], "score": s}))
    return pd.concat(out, ignore_index=True), unknown


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


def recommend(index: Index, out: str | Path, users=None, k: int = 100, exclude_seen: str | Path | None = None,
              embeddings: str | Path | None = None, batch_size: int = 4096, overwrite: bool = False,
              progress: bool = True) -> dict:
    """Write ``out`` (Parquet: ``user``, ``rank``, ``item``, ``score``) with the top-``k``
    items of each user (all users with ``users=None``); returns counts and the unknown ids.

    Query vectors come from the index's ``query`` relation in ``embeddings`` (default:
    the directory the index was built from); ``exclude_seen``: a graph store whose edges
    of that relation are removed from each user's list.
    """
    from graphrec.graph.store import GraphStore, parse_edge_type

    man = index.manifest
    if not man.get("query"):
        raise GraphrecError(f"{index.dir}: built without --query src:rel:dst, so it has no user query vectors "
                            "(rebuild it with `graphrec index --query user:rel:item`)")
    emb = Path(embeddings) if embeddings else resolve_portable(
        {"path": man["embeddings"], "relpath": man.get("embeddings_relpath")}, index.dir)
    from graphrec.retrieval.index import _emb_manifest

    retr = _emb_manifest(emb).get("retrieval", {})
    if man["query"] not in retr:
        raise GraphrecError(f"{emb}: no retrieval vectors for {man['query']} (the index's query relation)")
    qids, qvecs = read_vectors(emb / retr[man["query"]]["path"] / "query.parquet")
    index.check_dim(qvecs, f"{emb} ({man['query']} queries)")
    if users is None:
        sel, unknown = np.arange(qids.shape[0]), []
    else:
        users = np.asarray(users)
        sel, known = IdPositions(qids)(users)
        unknown = list(users[~known])
        sel = sel[sel >= 0]
        _report_unknown("user", unknown)
    seen_indptr = seen_items = None
    if exclude_seen is not None:
        et = parse_edge_type(man["query"])
        store = GraphStore(exclude_seen)
        if et not in store.edge_types:
            raise GraphrecError(f"--exclude-seen {exclude_seen}: graph has no relation {man['query']}")
        rel = store.relation(et)
        # store internal ids -> index rows (equal when both come from the same export)
        src, _, dst = et
        store_users = store.lookup(src, pa.array(qids))
        items_map = index.lookup(store.original_ids(dst))[0]
        seen_indptr, seen_items = np.asarray(rel.indptr), items_map[np.asarray(rel.indices)]
        user_row = store_users
    schema = pa.schema([("user", pa.array(qids[:0]).type), ("rank", pa.int32()), ("item", pa.array(index.ids[:0]).type),
                        ("score", pa.float32())])
    n_rows = 0
    with atomic_file(out, overwrite=overwrite) as tmp, pq.ParquetWriter(tmp, schema) as w:
        for lo in tqdm(range(0, sel.shape[0], batch_size), desc="recommend", disable=not progress, unit="batch"):
            b = sel[lo:lo + batch_size]
            extra = 0
            if seen_indptr is not None:
                su = user_row[b]
                deg = np.where(su >= 0, seen_indptr[np.maximum(su, 0) + 1] - seen_indptr[np.maximum(su, 0)], 0)
                extra = int(deg.max()) if deg.size else 0
            scores, hits = index.search(qvecs[b], k + extra)
            mask = hits >= 0
            if extra:  # (batch row, item row) keys of the seen pairs vs those of the hits
                starts = seen_indptr[np.maximum(su, 0)]
                j = np.repeat(np.arange(b.shape[0]), deg)
                seen = seen_items[np.repeat(starts, deg) + (np.arange(j.shape[0]) - np.repeat(np.cumsum(deg) - deg, deg))]
                ok = seen >= 0  # seen items missing from the index cannot be hits anyway
                mask &= ~np.isin(np.arange(b.shape[0])[:, None] * index.count + hits, (j * index.count + seen)[ok])
            rank = np.cumsum(mask, axis=1)
            mask &= rank <= k
            r, c = np.nonzero(mask)
            w.write_table(pa.table({"user": pa.array(qids[b][r]), "rank": pa.array(rank[r, c].astype(np.int32)),
                                    "item": pa.array(index.ids[hits[r, c]]), "score": pa.array(scores[r, c])},
                                   schema=schema))
            n_rows += r.shape[0]
    log.info("wrote %d recommendations for %d users -> %s", n_rows, sel.shape[0], out)
    return {"users": int(sel.shape[0]), "rows": n_rows, "unknown_users": [str(u) for u in unknown]}
