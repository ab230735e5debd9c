"""Everything the online service answers from one index directory, a batch at a time
(plain Python: no Ray, no HTTP — :mod:`graphrec.retrieval.service` wraps it).

- :meth:`Retriever.similar`: item→item, the item's :meth:`~Index.item_queries` vector,
  the item itself left out (as ``graphrec search``);
- :meth:`Retriever.recommend_users`: user→items from the user's exported query vector,
  optionally without the items the user engaged with in the index's graph (as
  ``graphrec recommend --exclude-seen``);
- :meth:`Retriever.recommend_session`: a query built from a list of items, the given
  items left out. The recipe is the export's ``session_queries``: the recency-weighted
  mean of the items' indexed vectors, ``q = Σ_i w_i c_i / Σ_i w_i`` with ``w_i =
  0.5^(a_i / half_life)`` and ``a_i`` the number of items after ``i`` in the list
  (PinSage: its user-vector recipe, as the vectors it gives new users; TwHIN, which
  learns no item→user map: ``half_life = None``, the plain mean), then
  :meth:`~Index.item_queries` (the retrieval transform of the index's vectors).

Each method takes a whole batch and makes one FAISS search for it (of the largest ``k``
plus the longest exclusion list); an unknown id gives ``None`` in its place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graphrec.errors import GraphrecError
from graphrec.models.users import recency_weighted_mean
from graphrec.retrieval.index import Index, IdPositions, _emb_manifest
from graphrec.retrieval.search import SeenItems, embeddings_dir, query_vectors, search_excluding, similar_rows

log = logging.getLogger(__name__)


@dataclass
class Hits:
    """One answer: ``query`` (the id as the index or export stores it), ``ids [<=k]`` and
    ``scores [<=k]`` (inner products, best first), ``unknown``: ids of the query that
    were not found (sessions: the items left out)."""

    query: object
    ids: np.ndarray
    scores: np.ndarray
    unknown: list

    def to_json(self) -> list[dict]:
        return [{"id": i, "score": s} for i, s in zip(self.ids.tolist(), self.scores.tolist(), strict=True)]


class Retriever:
    """An index, its query vectors (``--query`` indexes) and its graph's seen items.

    ``graph``: the graph store whose interactions ``exclude_seen`` removes (default: the
    graph the embeddings were exported from, when it is still there with the same
    checksum; else seen items cannot be excluded and :attr:`seen_error` says why)."""

    def __init__(self, index_dir: str | Path, graph: str | Path | None = None, gpu: bool | None = False):
        self.index = Index(index_dir, gpu=gpu)
        self.dir = self.index.dir.resolve()
        emb = embeddings_dir(self.index)
        self.embeddings = _emb_manifest(emb) if (emb / "manifest.json").is_file() else {}
        self.half_life = (self.embeddings.get("session_queries") or {}).get("half_life")
        self.user_ids = self.user_vectors = self._users = None
        self.seen: SeenItems | None = None
        self.seen_error = f"{self.dir}: built without --query, so it has no users"
        if self.index.manifest.get("query"):
            self.user_ids, self.user_vectors = query_vectors(self.index)
            self._users = IdPositions(self.user_ids)
            self._open_seen(graph)

    def _open_seen(self, graph: str | Path | None) -> None:
        if graph is None:
            graph = self.embeddings.get("graph")
            if graph is None or not (Path(graph) / "manifest.json").is_file():
                self.seen_error = f"the graph of {self.dir}'s embeddings ({graph}) is not available"
                return
            from graphrec.graph.store import GraphStore

            if GraphStore(graph).checksum != self.embeddings.get("graph_checksum"):
                self.seen_error = f"{graph} changed since {self.dir}'s embeddings were exported (checksum)"
                return
        self.seen = SeenItems(self.index, self.user_ids, graph)
        self.seen_error = None

    @property
    def count(self) -> int:
        return self.index.count

    @property
    def dim(self) -> int:
        return self.index.dim

    def __repr__(self) -> str:
        users = 0 if self.user_ids is None else len(self.user_ids)
        return f"Retriever({self.index!r}, users={users}, seen={self.seen is not None})"

    def similar(self, ids, ks) -> list[Hits | None]:
        """Item→item: the ``ks[i]`` items most like ``ids[i]``, itself excluded."""
        rows, known = self.index.lookup(np.asarray(ids))
        out: list[Hits | None] = [None] * len(rows)
        if known.any():
            kq = np.asarray(ks)[known]
            scores, hits = similar_rows(self.index, rows[known], int(kq.max()))
            self._fill(out, np.flatnonzero(known), self.index.ids[rows[known]], kq, scores, hits)
        return out

    def recommend_users(self, users, ks, exclude_seen) -> list[Hits | None]:
        """User→items from each user's query vector; ``exclude_seen[i]``: leave out the
        items user ``i`` engaged with in :attr:`seen`'s graph (:class:`GraphrecError`
        where that graph is not available or the index has no users)."""
        if self._users is None:
            raise GraphrecError(self.seen_error)
        exclude_seen = np.asarray(exclude_seen, dtype=bool)
        if exclude_seen.any() and self.seen is None:
            raise GraphrecError(f"exclude_seen: {self.seen_error}")
        rows, known = self._users(np.asarray(users))
        out: list[Hits | None] = [None] * len(rows)
        if known.any():
            rows_k, kq, excl = rows[known], np.asarray(ks)[known], exclude_seen[known]
            deg = np.zeros(rows_k.shape[0], dtype=np.int64)
            seen_rows = np.zeros(0, dtype=np.int64)
            if excl.any():
                indptr, seen_rows = self.seen(rows_k[excl])
                deg[excl] = np.diff(indptr)
            scores, hits = search_excluding(self.index, self.user_vectors[rows_k], int(kq.max()),
                                            np.concatenate([[0], np.cumsum(deg)]), seen_rows)
            self._fill(out, np.flatnonzero(known), self.user_ids[rows_k], kq, scores, hits)
        return out

    def session_queries(self, item_rows: list[np.ndarray]) -> np.ndarray:
        """``[n, dim]`` query vectors of ``n`` item lists (index rows, oldest first; each
        non-empty): the recency-weighted mean of their vectors, through
        :meth:`~Index.item_queries`."""
        lens = np.array([r.shape[0] for r in item_rows], dtype=np.int64)
        flat = np.concatenate(item_rows)
        vecs = torch.from_numpy(np.asarray(self.index.vectors[flat], dtype=np.float32))
        mean = recency_weighted_mean(vecs, np.concatenate([[0], np.cumsum(lens)]), np.arange(flat.shape[0]),
                                     half_life=self.half_life)
        return self.index.item_queries(mean.numpy())

    def recommend_session(self, item_lists, ks) -> list[Hits | None]:
        """Items for sessions: ``item_lists[i]`` (original ids, oldest first) → the
        ``ks[i]`` best items, the given ones excluded; ids not in the index are left out
        (``Hits.unknown``), a list with none known gives ``None``."""
        lens = np.array([len(items) for items in item_lists], dtype=np.int64)
        flat = np.asarray([i for items in item_lists for i in items])
        rows, known = self.index.lookup(flat)
        bounds = np.concatenate([[0], np.cumsum(lens)])
        per_list = [rows[a:b][known[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        unknown = [flat[a:b][~known[a:b]].tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        ok = np.array([r.shape[0] > 0 for r in per_list], dtype=bool)
        out: list[Hits | None] = [None] * len(item_lists)
        if ok.any():
            lists = [per_list[i] for i in np.flatnonzero(ok)]
            queries = self.session_queries(lists)
            deg = np.array([r.shape[0] for r in lists], dtype=np.int64)
            kq = np.asarray(ks)[ok]
            scores, hits = search_excluding(self.index, queries, int(kq.max()), np.concatenate([[0], np.cumsum(deg)]),
                                            np.concatenate(lists))
            self._fill(out, np.flatnonzero(ok), [None] * len(lists), kq, scores, hits,
                       [unknown[i] for i in np.flatnonzero(ok)])
        return out

    def _fill(self, out, positions, queries, ks, scores, hits, unknown=None) -> None:
        for j, pos in enumerate(positions):
            k = int(ks[j])
            keep = hits[j, :k] >= 0
            out[pos] = Hits(query=queries[j].item() if hasattr(queries[j], "item") else queries[j],
                            ids=self.index.ids[hits[j, :k][keep]], scores=scores[j, :k][keep],
                            unknown=unknown[j] if unknown is not None else [])
