import numpy as np
import torch

from graphrec.sampling import RelationBatchSchedule, RelationEdges, uniform_typed_negatives


def _rels():
    a = RelationEdges(("user", "rated", "item"), np.arange(1000) % 50, np.arange(1000) % 70)
    b = RelationEdges(("item", "has", "tag"), np.arange(100) % 70, np.arange(100) % 9)
    return [a, b]


def test_weights_set_positives_per_epoch_and_batches_are_single_relation():
    s = RelationBatchSchedule(_rels(), [0.5, 3.0], batch_size=64, seed=1)
    seen = {0: 0, 1: 0}
    for rel, h, t in s.epoch(0):
        seen[rel] += h.shape[0]
        assert h.shape == t.shape and h.dtype == torch.int64
    assert seen[0] == 8 * 64 and seen[1] == 5 * 64  # ceil(500/64), ceil(300/64) batches


def test_shards_are_disjoint_and_lockstep():
    rels = _rels()
    a = RelationBatchSchedule(rels, [1.0, 1.0], batch_size=32, seed=3, rank=0, world_size=2)
    b = RelationBatchSchedule(rels, [1.0, 1.0], batch_size=32, seed=3, rank=1, world_size=2)
    assert a.steps_per_epoch == b.steps_per_epoch
    assert not set(a.train_ids[0]) & set(b.train_ids[0])
    assert sorted(np.concatenate([a.train_ids[0], b.train_ids[0]])) == list(range(1000))
    assert [r for r, _, _ in a.epoch(2)] == [r for r, _, _ in b.epoch(2)]


def test_holdout_is_excluded_and_fixed():
    s = RelationBatchSchedule(_rels(), [1.0, 1.0], batch_size=100, seed=5, holdout_fraction=0.1)
    held = set(s.holdout_ids[0].tolist())
    assert len(held) == 100 and not held & set(s.train_ids[0].tolist())
    s2 = RelationBatchSchedule(_rels(), [1.0, 1.0], batch_size=100, seed=5, holdout_fraction=0.1, rank=1, world_size=2)
    assert set(s2.holdout_ids[0].tolist()) == held


def test_typed_negatives_never_cross_types():
    g = torch.Generator().manual_seed(0)
    neg = uniform_typed_negatives(9, 10_000, g)
    assert neg.min() >= 0 and neg.max() < 9
    # through the model: negatives of relation item->tag only index tag rows
    from graphrec.models import TwHIN

    m = TwHIN({"user": 50, "item": 70, "tag": 9}, [r.edge_type for r in _rels()], dim=4)
    ids = m.global_ids("tag", neg)
    assert ids.min() >= m.offsets["tag"] and ids.max() < m.offsets["tag"] + 9


def test_edge_weights_draw_positives_in_proportion():
    n = 1000
    w = np.zeros(n)
    w[:10] = 1.0  # only the first 10 edges can be drawn
    w[:5] = 3.0  # ... the first 5 three times as often
    rel = RelationEdges(("user", "rated", "item"), np.arange(n), np.arange(n) % 7, weight=w)
    s = RelationBatchSchedule([rel], [1.0], batch_size=100, seed=0)
    heads = torch.cat([h for _, h, _ in s.epoch(0)]).numpy()
    assert heads.shape[0] == n and heads.max() < 10
    counts = np.bincount(heads, minlength=10)
    assert abs(counts[:5].sum() / n - 0.75) < 0.05


def test_edge_weights_are_checked():
    import pytest

    with pytest.raises(ValueError, match="user:rated:item: 2 edge weights for 3 edges"):
        RelationEdges(("user", "rated", "item"), np.arange(3), np.arange(3), weight=np.ones(2))
    with pytest.raises(ValueError, match="finite and >= 0"):
        RelationEdges(("user", "rated", "item"), np.arange(3), np.arange(3), weight=np.array([1.0, -1.0, 0.0]))
