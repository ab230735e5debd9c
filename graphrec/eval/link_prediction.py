"""Filtered link prediction (Bordes et al. 2013): MRR and Hits@K.

For a test triple ``(h, r, t)`` the tail rank is computed over every node of ``r``'s
destination type after removing all *other* known true triples ``(h, r, t')`` (train,
valid and test), and the head rank likewise over the source type. With ``g``/``e`` the
numbers of unfiltered candidates scoring greater than / equal to the true triple, its rank
under a random order of ties is uniform on ``g + 1 .. g + e + 1``, and every metric is the
expectation over that order (the rule of :mod:`graphrec.eval.metrics`, shared by the
ranking metrics): ``MRR = mean E[1/rank]``, ``Hits@K = mean P(rank ≤ K)``,
``mean_rank = mean (g + e/2 + 1)``. A constant scorer gets a random ranking's figures.

Scores come from callables, so this module knows no model:
``score_tails(edge_type, heads [B]) -> [B, N_dst]`` and
``score_heads(edge_type, tails [B]) -> [B, N_src]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from graphrec.eval.metrics import expected_hit, expected_reciprocal_rank
from graphrec.graph.csr import build_csr, csr_rows


class KnownTriples:
    """All true edges of each relation, as CSR by head and by tail, for filtering."""

    def __init__(self, num_src: dict, num_dst: dict):
        self._parts: dict = {}
        self._csr: dict = {}
        self.num_src, self.num_dst = num_src, num_dst

    def add(self, edge_type, src: np.ndarray, dst: np.ndarray) -> None:
        self._csr.pop((tuple(edge_type), "head"), None)
        self._csr.pop((tuple(edge_type), "tail"), None)
        self._parts.setdefault(tuple(edge_type), []).append((np.asarray(src, np.int64), np.asarray(dst, np.int64)))

    def csr(self, edge_type, by: str):
        key = (tuple(edge_type), by)
        cache = self._csr
        if key not in cache:
            parts = self._parts.get(tuple(edge_type), [])
            src = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
            dst = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
            et = tuple(edge_type)
            if by == "head":
                indptr, idx, _ = build_csr(src, dst, self.num_src[et], self.num_dst[et])
            else:
                indptr, idx, _ = build_csr(dst, src, self.num_dst[et], self.num_src[et])
            cache[key] = (indptr, idx)
        return cache[key]


def _ranks(scores: torch.Tensor, true_idx: torch.Tensor, filt_rows: np.ndarray, filt_cols: np.ndarray) -> torch.Tensor:
    """``[B, 2]`` (greater, equal) counts of the unfiltered competitors of each true entity."""
    b = scores.shape[0]
    true = scores[torch.arange(b), true_idx].clone()
    scores = scores.clone()
    if filt_rows.size:
        scores[torch.from_numpy(filt_rows), torch.from_numpy(filt_cols)] = float("-inf")
    scores[torch.arange(b), true_idx] = float("-inf")  # the target itself is not a competitor
    greater = (scores > true[:, None]).sum(1).double()
    equal = (scores == true[:, None]).sum(1).double()
    return torch.stack([greater, equal], dim=1)


def filtered_link_prediction(
    score_tails: Callable, score_heads: Callable, test: dict, known: KnownTriples,
    ks: Sequence[int] = (1, 3, 10), batch_size: int = 512, sides: Sequence[str] = ("tail", "head"),
) -> dict:
    """Filtered MRR / Hits@K over ``test`` (``{edge_type: (src [E], dst [E])}``).

    Returns overall metrics (means over all test triples and both sides), per-side
    metrics (``tail_mrr``, ``head_mrr``) and ``per_relation`` MRR.
    """
    all_ranks, per_side, per_rel = [], {s: [] for s in sides}, {}
    for et, (src, dst) in test.items():
        src = np.array(src, dtype=np.int64)  # writable copies (parquet buffers are read-only)
        dst = np.array(dst, dtype=np.int64)
        rel_ranks = []
        for side in sides:
            indptr, idx = known.csr(et, "head" if side == "tail" else "tail")
            for start in range(0, src.shape[0], batch_size):
                h = src[start : start + batch_size]
                t = dst[start : start + batch_size]
                with torch.no_grad():
                    if side == "tail":
                        scores = score_tails(et, torch.from_numpy(h))
                        rows, cols = csr_rows(indptr, idx, h)
                        r = _ranks(scores, torch.from_numpy(t), rows, cols)
                    else:
                        scores = score_heads(et, torch.from_numpy(t))
                        rows, cols = csr_rows(indptr, idx, t)
                        r = _ranks(scores, torch.from_numpy(h), rows, cols)
                per_side[side].append(r)
                rel_ranks.append(r)
                all_ranks.append(r)
        if rel_ranks:
            per_rel[":".join(et)] = float(_rr(torch.cat(rel_ranks)).mean())
    if not all_ranks:
        raise ValueError("no test triples")
    ranks = torch.cat(all_ranks)
    g, e = ranks[:, 0], ranks[:, 1]
    out = {"mrr": float(_rr(ranks).mean()), "mean_rank": float((g + e / 2 + 1).mean()),
           "triples": int(ranks.shape[0] // len(sides))}
    for k in ks:
        out[f"hits@{k}"] = float(expected_hit(g, e, k).mean())
    for side, rs in per_side.items():
        if rs:
            out[f"{side}_mrr"] = float(_rr(torch.cat(rs)).mean())
    out["per_relation"] = per_rel
    return out


def _rr(ranks: torch.Tensor) -> torch.Tensor:
    return expected_reciprocal_rank(ranks[:, 0], ranks[:, 1])
