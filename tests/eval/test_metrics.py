"""Vectorised ranking metrics against a brute-force Python reference."""

import math

import numpy as np
import torch

from graphrec.eval.metrics import csr_rows, evaluate_ranking


def brute_force(scores, targets, seen, ks):
    out = {f"{m}@{k}": [] for m in ("recall", "hit", "ndcg") for k in ks}
    out["mrr"] = []
    for u in range(scores.shape[0]):
        t = set(targets[u])
        if not t:
            continue
        cand = [i for i in range(scores.shape[1]) if i not in seen[u] or i in t]
        ranked = sorted(cand, key=lambda i: (-scores[u, i], i))
        for k in ks:
            top = ranked[:k]
            hits = [1 if i in t else 0 for i in top]
            out[f"recall@{k}"].append(sum(hits) / len(t))
            out[f"hit@{k}"].append(float(sum(hits) > 0))
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(t))))
            out[f"ndcg@{k}"].append(dcg / idcg)
        best = max(scores[u, i] for i in t)
        out["mrr"].append(1.0 / (1 + sum(1 for i in cand if scores[u, i] > best)))
    return {k: float(np.mean(v)) for k, v in out.items()}, len(out["mrr"])


def to_csr(lists):
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    return indptr, np.array([i for x in lists for i in x], dtype=np.int64)


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    n_users, n_items, ks = 57, 40, (1, 5, 10, 50)
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    targets = [list(rng.choice(n_items, rng.integers(0, 6), replace=False)) for _ in range(n_users)]
    seen = [list(rng.choice(n_items, rng.integers(0, 15), replace=False)) for _ in range(n_users)]
    ref, n = brute_force(scores, targets, [set(s) for s in seen], ks)
    st = torch.from_numpy(scores)
    got = evaluate_ranking(lambda u: st[u], to_csr(targets), n_items, seen=to_csr(seen), ks=ks, batch_size=8)
    assert got["users"] == n
    for k, v in ref.items():
        assert abs(got[k] - v) < 1e-6, (k, got[k], v)


def test_perfect_and_worst_models():
    n_items = 20
    targets = to_csr([[3], [5, 6]])
    perfect = torch.full((2, n_items), -1.0)
    perfect[0, 3] = perfect[1, 5] = perfect[1, 6] = 1.0
    r = evaluate_ranking(lambda u: perfect[u], targets, n_items, ks=(2,))
    assert r["recall@2"] == 1.0 and r["ndcg@2"] == 1.0 and r["mrr"] == 1.0
    worst = -perfect
    r = evaluate_ranking(lambda u: worst[u], targets, n_items, ks=(2,))
    assert r["recall@2"] == 0.0 and r["hit@2"] == 0.0


def test_csr_rows():
    indptr, idx = to_csr([[1, 2], [], [3, 4, 5]])
    r, c = csr_rows(indptr, idx, np.array([2, 0]))
    assert r.tolist() == [0, 0, 0, 1, 1] and c.tolist() == [3, 4, 5, 1, 2]
