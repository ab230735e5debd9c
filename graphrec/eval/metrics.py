"""Top-K ranking metrics with full ranking, vectorised in torch; ties never favour the model.

**One rank definition for every metric**: a metric is its *expectation over a uniformly
random order of tied items*. A scorer that ties everything (a constant) therefore scores
exactly what a random ranking scores, and a model cannot gain from ties it creates.

For a user with targets ``T`` (``|T| >= 1``), excluded items ``X`` (``X ∩ T = ∅``: never
ranked, e.g. items seen in training) and candidates ``C = all items − X``: for a target
``i`` let ``g_i = #{c ∈ C : s_c > s_i}`` and ``e_i = #{c ∈ C − {i} : s_c = s_i}``; under a
random tie-break its rank is uniform on ``g_i + 1 .. g_i + e_i + 1``, so

* ``Recall@K  = Σ_i P(rank_i ≤ K) / |T|``, ``P(rank_i ≤ K) = clip((K − g_i) / (e_i + 1), 0, 1)``;
* ``NDCG@K    = Σ_i E[1(rank_i ≤ K) / log2(rank_i + 1)] / IDCG@K``, with
  ``E[·] = (D(min(g_i + e_i + 1, K)) − D(min(g_i, K))) / (e_i + 1)``,
  ``D(n) = Σ_{p ≤ n} 1/log2(p + 1)`` and ``IDCG@K = D(min(K, |T|))``;
* ``HitRate@K = P(some target has rank ≤ K)`` and ``MRR = E[1 / rank of the best target]``:
  with ``s*`` the best target score, ``g*`` candidates above it and a tie group of ``m``
  candidates at ``s*`` holding ``c`` targets, the first target's place ``J`` in the group
  has ``P(J ≥ j) = C(m − j + 1, c) / C(m, c)`` (hypergeometric), so
  ``HitRate@K = 1 − C(m − c, K − g*) / C(m, K − g*)`` (for ``0 ≤ K − g* < m``) and
  ``MRR = Σ_j P(J = j) / (g* + j)``.

Single-target helpers (:func:`expected_reciprocal_rank`, :func:`expected_hit`) serve
filtered link prediction (:mod:`graphrec.eval.link_prediction`). Users without targets
are skipped; metrics are means over evaluated users. Metrics take arrays and score
tensors; they know nothing of models or of which items a protocol excludes
(:mod:`graphrec.eval.protocol`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from graphrec.graph.csr import csr_rows

_GRID_ELEMENTS = 50_000_000  # scores (or MRR grid cells) held at once


# ---- single target: rank uniform on g+1 .. g+e+1 --------------------------------------


def expected_reciprocal_rank(greater: torch.Tensor, equal: torch.Tensor) -> torch.Tensor:
    """``E[1/rank]`` with ``rank`` uniform on ``greater + 1 .. greater + equal + 1``:
    ``(H_{g+e+1} − H_g) / (e + 1) = (ψ(g + e + 2) − ψ(g + 1)) / (e + 1)`` (float64)."""
    g, e = greater.double(), equal.double()
    return (torch.special.digamma(g + e + 2) - torch.special.digamma(g + 1)) / (e + 1)


def expected_hit(greater: torch.Tensor, equal: torch.Tensor, k: int) -> torch.Tensor:
    """``P(rank ≤ k) = clip((k − g) / (e + 1), 0, 1)`` (float64)."""
    g, e = greater.double(), equal.double()
    return ((k - g) / (e + 1)).clamp(0.0, 1.0)


def _log_comb(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``log C(n, k)`` for ``0 ≤ k ≤ n`` (float64 lgamma)."""
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def _first_target_metrics(greater: torch.Tensor, group: torch.Tensor, hits: torch.Tensor,
                          ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Expected HitRate@K and MRR from the best target's ``greater`` (``g*``), the size of
    its tie group ``group`` (``m``, the targets included) and the targets in it ``hits``
    (``c``); all ``[B]`` float64."""
    g, m, c = greater, group, hits
    out = {}
    for k in ks:
        slots = k - g  # places of the top-K left for the tie group
        miss = torch.zeros_like(g)
        inside = (slots >= 0) & (slots < m)
        ok = inside & (m - c >= slots)  # C(m - c, slots) > 0
        s = slots.clamp(min=0)
        miss[ok] = torch.exp(_log_comb(m[ok] - c[ok], s[ok]) - _log_comb(m[ok], s[ok]))
        miss[slots < 0] = 1.0
        out[f"hit@{k}"] = 1.0 - miss
    mrr = 1.0 / (g + 1)  # a lone best target (m == c == 1) or a group of targets only
    tied = (m > c).nonzero().flatten()
    if tied.numel():
        width = int((m[tied] - c[tied] + 1).max())
        rows = max(1, _GRID_ELEMENTS // (width + 1))  # bound the [rows, width] grid
        j = torch.arange(1, width + 2, dtype=torch.float64)[None, :]  # 1 .. width + 1
        for start in range(0, tied.numel(), rows):
            sel = tied[start : start + rows]
            gt, mt, ct = g[sel], m[sel], c[sel]
            # P(J >= j) = C(m - j + 1, c) / C(m, c), zero once m - j + 1 < c
            n = mt[:, None] - j + 1
            surv = torch.where(n >= ct[:, None],
                               torch.exp(_log_comb(n.clamp(min=0), ct[:, None].expand_as(n)) - _log_comb(mt, ct)[:, None]),
                               torch.zeros_like(n))
            p = surv[:, :-1] - surv[:, 1:]  # P(J = j), j = 1 .. width
            mrr[sel] = (p / (gt[:, None] + j[:, :-1])).sum(1)
    out["mrr"] = mrr
    return out


def ranking_metrics_batch(
    scores: torch.Tensor, target_mask: torch.Tensor, exclude_mask: torch.Tensor | None, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-user expected metrics for one batch (see the module docstring).

    ``scores`` float ``[B, I]``; ``target_mask`` bool ``[B, I]`` (at least one target per
    row); ``exclude_mask`` bool ``[B, I]`` or None: items not ranked at all. A target
    that is also excluded is an error (the protocol decides what is a target).
    Returns ``{name: float64 [B]}``.
    """
    b, n_items = scores.shape
    if not scores.is_floating_point():
        scores = scores.float()
    if exclude_mask is not None:
        if bool((exclude_mask & target_mask).any()):
            raise ValueError("an excluded item is also a target: a protocol must exclude targets from the mask")
        excluded = exclude_mask
    else:
        excluded = torch.zeros_like(target_mask)
    # excluded items score -inf: below every finite target, never counted against it
    ranked = scores.masked_fill(excluded, float("-inf"))
    n_excl = excluded.sum(1)
    # target scores per row, sorted ascending, padded with +inf to [B, M]
    n_t = target_mask.sum(1)
    m_max = int(n_t.max()) if b else 0
    rows, cols = target_mask.nonzero(as_tuple=True)  # grouped by row
    slot = torch.arange(rows.numel()) - (torch.cumsum(n_t, 0) - n_t)[rows]
    t_scores = torch.full((b, m_max), float("inf"), dtype=scores.dtype)
    t_scores[rows, slot] = scores[rows, cols]
    t_scores = t_scores.sort(dim=1).values
    present = torch.arange(m_max)[None, :] < n_t[:, None]
    # every item falls between two sorted targets: count items above each target with one
    # searchsorted + histogram per side instead of sorting the whole row
    below = torch.searchsorted(t_scores, ranked.contiguous(), right=False).clamp(max=m_max)  # #targets < s
    below_eq = torch.searchsorted(t_scores, ranked.contiguous(), right=True).clamp(max=m_max)  # #targets <= s

    def items_above(k):  # [B, M]: #items whose k exceeds j, for target slot j
        hist = torch.zeros(b, m_max + 1, dtype=torch.int64).scatter_add_(1, k, torch.ones_like(k))
        return hist.flip(1).cumsum(1).flip(1)[:, 1:]

    above = items_above(below)  # #{s > t_j}
    at_least = items_above(below_eq)  # #{s >= t_j}, t_j itself included
    # -inf targets would count the excluded items (also -inf) as ties
    neg_inf = torch.isneginf(t_scores) & present
    at_least = at_least - torch.where(neg_inf, n_excl[:, None], torch.zeros_like(at_least))
    g = above.double()
    e = (at_least - above - 1).clamp(min=0).double()
    pres = present.double()
    n_tf = n_t.double().clamp(min=1)
    max_k = max(ks)
    disc = torch.cat([torch.zeros(1, dtype=torch.float64),
                      torch.cumsum(1.0 / torch.log2(torch.arange(2, max_k + 2, dtype=torch.float64)), 0)])
    out = {}
    for k in ks:
        p_in = expected_hit(g, e, k) * pres
        out[f"recall@{k}"] = p_in.sum(1) / n_tf
        hi = (g + e + 1).clamp(max=k).long()
        lo = g.clamp(max=k).long()
        dcg = ((disc[hi] - disc[lo]) / (e + 1) * pres).sum(1)
        out[f"ndcg@{k}"] = dcg / disc[n_t.clamp(min=1, max=k)]
    # best target (the last present slot): the tie group at the highest target score
    last = (n_t - 1).clamp(min=0)[:, None]
    best = t_scores.gather(1, last).squeeze(1)
    g_star = above.gather(1, last).squeeze(1)
    group = at_least.gather(1, last).squeeze(1) - g_star
    c = ((t_scores == best[:, None]) & present).sum(1)
    first = _first_target_metrics(g_star.double(), group.double().clamp(min=1), c.double(), ks)
    out.update(first)
    return out


def evaluate_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    targets: tuple[np.ndarray, np.ndarray],
    num_items: int,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    users: np.ndarray | None = None,
    queries: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean expected ranking metrics over users with targets.

    ``score_fn(queries LongTensor [B]) -> FloatTensor [B, num_items]`` scores every item
    for a batch of ``queries`` (default: the users themselves; ``queries[u]`` maps user
    ``u`` to its query, e.g. its last item for item→item); ``targets`` and ``exclude``
    are CSR ``(indptr [U+1], items)`` over users (disjoint per user). ``users`` limits
    the evaluation (users without targets are always skipped). Memory is
    ``O(batch_size * num_items)``. Returns ``{"recall@10": ..., "users": n, ...}``.
    """
    t_indptr, t_items = targets
    has_target = np.diff(t_indptr) > 0
    users = np.flatnonzero(has_target) if users is None else np.asarray(users, np.int64)[has_target[users]]
    sums: dict[str, float] = {}
    batch_size = max(1, min(batch_size, _GRID_ELEMENTS // max(num_items, 1)))
    for start in range(0, users.shape[0], batch_size):
        batch = users[start : start + batch_size]
        b = batch.shape[0]
        q = batch if queries is None else np.asarray(queries)[batch]
        with torch.no_grad():
            scores = score_fn(torch.from_numpy(np.ascontiguousarray(q, dtype=np.int64)))
        if scores.shape != (b, num_items):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected {(b, num_items)}")
        tmask = torch.zeros(b, num_items, dtype=torch.bool)
        r, c = csr_rows(t_indptr, t_items, batch)
        tmask[torch.from_numpy(r), torch.from_numpy(c)] = True
        xmask = None
        if exclude is not None:
            xmask = torch.zeros(b, num_items, dtype=torch.bool)
            r, c = csr_rows(exclude[0], exclude[1], batch)
            xmask[torch.from_numpy(r), torch.from_numpy(c)] = True
        per_user = ranking_metrics_batch(scores, tmask, xmask, ks)
        for name, v in per_user.items():
            sums[name] = sums.get(name, 0.0) + float(v.sum())
    n = int(users.shape[0])
    result = {name: total / max(n, 1) for name, total in sums.items()}
    result["users"] = n
    return result
