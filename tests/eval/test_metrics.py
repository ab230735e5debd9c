"""Ranking metrics against brute force: every order of tied items enumerated and averaged.

The reference knows nothing of the vectorised formulas: for each user it lists the
candidates (items not excluded), enumerates every ranking that the scores allow (each
tie group in every order), computes Recall/HitRate/NDCG@K and MRR of that ranking the
textbook way and averages over the rankings.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from graphrec.eval.link_prediction import KnownTriples, filtered_link_prediction
from graphrec.eval.metrics import csr_rows, evaluate_ranking, ranking_metrics_batch


def _rankings(cand, scores):
    """Every full ranking of ``cand`` consistent with ``scores`` (ties in every order)."""
    levels = sorted({scores[i] for i in cand}, reverse=True)
    groups = [[i for i in cand if scores[i] == s] for s in levels]
    for combo in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for g in combo for i in g]


def _metrics_of_ranking(ranked, targets, ks):
    out = {}
    for k in ks:
        hits = [1 if i in targets else 0 for i in ranked[:k]]
        out[f"recall@{k}"] = sum(hits) / len(targets)
        out[f"hit@{k}"] = float(sum(hits) > 0)
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(targets))))
        out[f"ndcg@{k}"] = dcg / idcg
    first = next(r for r, i in enumerate(ranked) if i in targets)
    out["mrr"] = 1.0 / (first + 1)
    return out


def brute_force(scores, targets, excluded, ks):
    """Mean over users (with targets) of the mean over admissible rankings."""
    per_user = []
    for u in range(scores.shape[0]):
        t = set(targets[u])
        if not t:
            continue
        cand = [i for i in range(scores.shape[1]) if i not in excluded[u]]
        rows = [_metrics_of_ranking(r, t, ks) for r in _rankings(cand, scores[u].tolist())]
        per_user.append({k: float(np.mean([r[k] for r in rows])) for k in rows[0]})
    return {k: float(np.mean([p[k] for p in per_user])) for k in per_user[0]}, len(per_user)


def to_csr(lists):
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    return indptr, np.array([i for x in lists for i in x], dtype=np.int64)


def _random_case(rng, n_users, n_items, levels):
    scores = rng.integers(0, levels, (n_users, n_items)).astype(np.float32) if levels else \
        rng.standard_normal((n_users, n_items)).astype(np.float32)
    targets, excluded = [], []
    for _ in range(n_users):
        perm = rng.permutation(n_items)
        nt, nx = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        targets.append(sorted(perm[:nt].tolist()))
        excluded.append(sorted(perm[nt : nt + nx].tolist()))
    return scores, targets, excluded


@pytest.mark.parametrize("levels", [2, 3, 0])  # heavy ties, some ties, continuous scores
def test_matches_brute_force_over_tie_breaks(levels):
    rng = np.random.default_rng(levels)
    n_users, n_items, ks = 30, 7, (1, 2, 3, 5, 10)
    scores, targets, excluded = _random_case(rng, n_users, n_items, levels)
    ref, n = brute_force(scores, targets, [set(x) for x in excluded], ks)
    st = torch.from_numpy(scores)
    got = evaluate_ranking(lambda u: st[u], to_csr(targets), n_items, exclude=to_csr(excluded), ks=ks, batch_size=8)
    assert got["users"] == n
    for k, v in ref.items():
        assert abs(got[k] - v) < 1e-9, (k, got[k], v)


def test_continuous_scores_larger():
    """No ties: one ranking per user; a larger catalogue than enumeration allows."""
    rng = np.random.default_rng(5)
    scores, targets, excluded = _random_case(rng, 40, 60, 0)
    ref, n = brute_force(scores, targets, [set(x) for x in excluded], (1, 10, 50))
    st = torch.from_numpy(scores)
    got = evaluate_ranking(lambda u: st[u], to_csr(targets), 60, exclude=to_csr(excluded), ks=(1, 10, 50))
    assert got["users"] == n
    for k, v in ref.items():
        assert abs(got[k] - v) < 1e-9, (k, got[k], v)


def test_constant_scorer_scores_what_a_random_ranking_scores():
    n_items, n_excl = 50, 10
    n = n_items - n_excl  # candidates
    excluded = to_csr([list(range(40, 50))] * 2)
    targets = to_csr([[7], [1, 2, 3]])
    const = torch.zeros(2, n_items)
    got = ranking_metrics_batch(const, *_masks(targets, excluded, 2, n_items), ks=(1, 10))
    harmonic = sum(1.0 / i for i in range(1, n + 1))
    # one target: its rank is uniform on 1..n
    assert got["mrr"][0].item() == pytest.approx(harmonic / n) and got["mrr"][0].item() < 0.11
    assert got["recall@10"][0].item() == pytest.approx(10 / n)
    # three targets: recall@K = K/n, HitRate@K = 1 - C(n-3, K)/C(n, K)
    assert got["recall@10"][1].item() == pytest.approx(10 / n)
    assert got["hit@10"][1].item() == pytest.approx(1 - math.comb(n - 3, 10) / math.comb(n, 10))
    # Monte Carlo over random permutations agrees (the expectation a random ranking has)
    rng = np.random.default_rng(0)
    mc = [_metrics_of_ranking(rng.permutation(n).tolist(), {1, 2, 3}, (10,)) for _ in range(20000)]
    for k in ("mrr", "ndcg@10", "hit@10"):
        m = np.array([x[k] for x in mc])
        assert abs(got[k][1].item() - m.mean()) < 4 * m.std() / math.sqrt(m.size), k


def _masks(targets, excluded, b, n_items):
    t = torch.zeros(b, n_items, dtype=torch.bool)
    x = torch.zeros(b, n_items, dtype=torch.bool)
    r, c = csr_rows(*targets, np.arange(b))
    t[r, c] = True
    r, c = csr_rows(*excluded, np.arange(b))
    x[r, c] = True
    return t, x


def test_perfect_and_worst_models():
    n_items = 20
    targets = to_csr([[3], [5, 6]])
    perfect = torch.full((2, n_items), -1.0)
    perfect[0, 3] = perfect[1, 5] = perfect[1, 6] = 1.0
    r = evaluate_ranking(lambda u: perfect[u], targets, n_items, ks=(2,))
    assert r["recall@2"] == 1.0 and r["ndcg@2"] == 1.0 and r["mrr"] == 1.0
    r = evaluate_ranking(lambda u: -perfect[u], targets, n_items, ks=(2,))
    assert r["recall@2"] == 0.0 and r["hit@2"] == 0.0


def test_excluded_target_is_an_error():
    t = torch.zeros(1, 5, dtype=torch.bool)
    t[0, 1] = True
    with pytest.raises(ValueError, match="excluded item is also a target"):
        ranking_metrics_batch(torch.zeros(1, 5), t, t.clone(), ks=(1,))


def test_link_prediction_ties_count_as_random_order():
    """A constant scorer ranks every test triple uniformly among the unfiltered candidates."""
    n, et = 9, ("e", "r", "e")
    known = KnownTriples({et: n}, {et: n})
    src, dst = np.array([0, 1, 2]), np.array([3, 4, 5])
    known.add(et, src, dst)
    known.add(et, np.array([0]), np.array([6]))  # another true tail of head 0: filtered
    const = lambda _et, x: torch.zeros(x.shape[0], n)  # noqa: E731
    res = filtered_link_prediction(const, const, {et: (src, dst)}, known, ks=(1, 3), sides=("tail",))
    # head 0 has 8 candidate tails (one filtered), heads 1 and 2 have 9
    h = lambda m: sum(1 / i for i in range(1, m + 1))  # noqa: E731
    assert res["mrr"] == pytest.approx((h(8) / 8 + 2 * h(9) / 9) / 3)
    assert res["hits@3"] == pytest.approx((3 / 8 + 2 * 3 / 9) / 3)
    assert res["mean_rank"] == pytest.approx((4.5 + 5 + 5) / 3)


def test_csr_rows():
    indptr, idx = to_csr([[1, 2], [], [3, 4, 5]])
    r, c = csr_rows(indptr, idx, np.array([2, 0]))
    assert r.tolist() == [0, 0, 0, 1, 1] and c.tolist() == [3, 4, 5, 1, 2]
