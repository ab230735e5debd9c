import numpy as np

from graphrec.sampling.positives import CoEngagement, co_engagement_pairs


def test_co_engagement_pairs_window_gap_and_order():
    # user 0: items 5 (t=1), 7 (t=3), 9 (t=2) -> time order 5, 9, 7; user 1: 7 (t=0), 7 (t=9)
    indptr = np.array([0, 3, 5])
    items = np.array([5, 7, 9, 7, 7])
    ts = np.array([1, 3, 2, 0, 9])
    q, p = co_engagement_pairs(indptr, items, ts, window=1)
    assert sorted(zip(q.tolist(), p.tolist())) == sorted([(5, 9), (9, 5), (9, 7), (7, 9)])  # self-pair dropped
    q, p = co_engagement_pairs(indptr, items, ts, window=2)
    assert (5, 7) in set(zip(q.tolist(), p.tolist())) and (7, 5) in set(zip(q.tolist(), p.tolist()))
    q, p = co_engagement_pairs(indptr, items, ts, window=2, max_gap=1)
    assert (5, 7) not in set(zip(q.tolist(), p.tolist()))  # 2 s apart


def test_sampled_co_engagement_stays_in_window_and_user():
    rng = np.random.default_rng(0)
    n_users, per_user = 30, 40
    indptr = np.arange(0, n_users * per_user + 1, per_user)
    items = rng.permutation(np.tile(np.arange(500), 3))[: n_users * per_user]
    ts = rng.integers(0, 10_000, size=items.shape[0])
    eng = CoEngagement(indptr, items, ts, window=5)
    allq, allp = eng.all_pairs()
    allowed = set(zip(allq.tolist(), allp.tolist()))
    q, p = eng.sample(np.random.default_rng(1), per_interaction=3)
    assert q.shape[0] > 0.95 * 3 * items.shape[0]  # (almost) every interaction finds partners
    assert set(zip(q.tolist(), p.tolist())) <= allowed  # only pairs of the window, same user
    # a fresh draw differs, the same seed repeats
    q2, p2 = eng.sample(np.random.default_rng(2), per_interaction=3)
    q3, p3 = eng.sample(np.random.default_rng(1), per_interaction=3)
    assert not np.array_equal(p, p2) and np.array_equal(p, p3)
