"""Top-K ranking metrics with full ranking and seen-item masking, vectorised in torch.

For a user with held-out items ``T`` (``|T| >= 1``) and the top-K list ``L`` of the full
ranking over all items, where items seen in training are masked out (unless they are
themselves in ``T``):

* ``Recall@K   = |L ∩ T| / |T|``
* ``HitRate@K  = 1[|L ∩ T| > 0]``
* ``NDCG@K     = Σ_{i<K, L_i ∈ T} 1/log2(i+2)  /  Σ_{i<min(K,|T|)} 1/log2(i+2)``
* ``MRR        = 1 / rank of the best-ranked item of T`` in the full ranking, with
  ``rank = 1 + #{unmasked items scoring strictly higher}`` (ties favour the target).

Users without held-out items are skipped; metrics are means over evaluated users.
Metrics take arrays and score tensors; they know nothing of models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def csr_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather CSR rows: ``(row_position [nnz], column [nnz])`` for ``rows`` (vectorised)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(indptr)[rows]
    lens = np.asarray(indptr)[rows + 1] - starts
    total = int(lens.sum())
    row_pos = np.repeat(np.arange(rows.shape[0], dtype=np.int64), lens)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    cols = np.asarray(indices)[offsets + np.arange(total, dtype=np.int64)]
    return row_pos, cols


def ranking_metrics_batch(
    scores: torch.Tensor, target_mask: torch.Tensor, seen_mask: torch.Tensor | None, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-user metrics for one batch.

    ``scores`` float ``[B, I]``; ``target_mask`` bool ``[B, I]`` (held-out items, at
    least one per row); ``seen_mask`` bool ``[B, I]`` or None. Returns ``{name: [B]}``.
    """
    scores = scores.float().clone()
    if seen_mask is not None:
        scores.masked_fill_(seen_mask & ~target_mask, float("-inf"))
    n_targets = target_mask.sum(1).clamp(min=1).float()
    max_k = min(max(ks), scores.shape[1])
    top = scores.topk(max_k, dim=1).indices
    hits = target_mask.gather(1, top).float()  # [B, max_k]
    discounts = 1.0 / torch.log2(torch.arange(2, max_k + 2, dtype=torch.float32))
    out = {}
    for k in ks:
        kk = min(k, max_k)
        h = hits[:, :kk]
        out[f"recall@{k}"] = h.sum(1) / n_targets
        out[f"hit@{k}"] = (h.sum(1) > 0).float()
        dcg = (h * discounts[:kk]).sum(1)
        ideal_len = n_targets.clamp(max=kk).long()
        idcg = torch.cumsum(discounts[:kk], 0)[ideal_len - 1]
        out[f"ndcg@{k}"] = dcg / idcg
    best_target = scores.masked_fill(~target_mask, float("-inf")).max(1, keepdim=True).values
    rank = 1 + (scores > best_target).sum(1)
    out["mrr"] = 1.0 / rank.float()
    return out


def evaluate_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    targets: tuple[np.ndarray, np.ndarray],
    num_items: int,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean ranking metrics over users with held-out items.

    ``score_fn(users LongTensor [B]) -> FloatTensor [B, num_items]`` scores every item;
    ``targets`` and ``seen`` are CSR ``(indptr [U+1], items)`` over users. Memory is
    ``O(batch_size * num_items)``. Returns ``{"recall@10": ..., "users": n, ...}``.
    """
    t_indptr, t_items = targets
    if users is None:
        users = np.flatnonzero(np.diff(t_indptr) > 0)
    else:
        users = np.asarray(users, dtype=np.int64)
        users = users[np.diff(t_indptr)[users] > 0]
    sums: dict[str, float] = {}
    for start in range(0, users.shape[0], batch_size):
        batch = users[start : start + batch_size]
        b = batch.shape[0]
        with torch.no_grad():
            scores = score_fn(torch.from_numpy(batch))
        if scores.shape != (b, num_items):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected {(b, num_items)}")
        tmask = torch.zeros(b, num_items, dtype=torch.bool)
        r, c = csr_rows(t_indptr, t_items, batch)
        tmask[torch.from_numpy(r), torch.from_numpy(c)] = True
        smask = None
        if seen is not None:
            smask = torch.zeros(b, num_items, dtype=torch.bool)
            r, c = csr_rows(seen[0], seen[1], batch)
            smask[torch.from_numpy(r), torch.from_numpy(c)] = True
        per_user = ranking_metrics_batch(scores, tmask, smask, ks)
        for name, v in per_user.items():
            sums[name] = sums.get(name, 0.0) + float(v.double().sum())
    n = int(users.shape[0])
    result = {name: total / max(n, 1) for name, total in sums.items()}
    result["users"] = n
    return result
