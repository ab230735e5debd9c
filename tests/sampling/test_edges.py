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
    for rel, h, t, _ in s.epoch(0):
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
    assert [r for r, *_ in a.epoch(2)] == [r for r, *_ in b.epoch(2)]


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
    heads = torch.cat([h for _, h, *_ in s.epoch(0)]).numpy()
    assert heads.shape[0] == n and heads.max() < 10
    counts = np.bincount(heads, minlength=10)
    assert abs(counts[:5].sum() / n - 0.75) < 0.05


def test_edge_weights_are_checked():
    import pytest

    with pytest.raises(ValueError, match="user:rated:item: 2 edge weights for 3 edges"):
        RelationEdges(("user", "rated", "item"), np.arange(3), np.arange(3), weight=np.ones(2))
    with pytest.raises(ValueError, match="finite and >= 0"):
        RelationEdges(("user", "rated", "item"), np.arange(3), np.arange(3), weight=np.array([1.0, -1.0, 0.0]))


def _kg_rels():
    """Three relations between entity and entity, one between entity and tag."""
    rng = np.random.default_rng(0)
    out = []
    for name, n in (("a", 300), ("b", 70), ("c", 5)):
        out.append(RelationEdges(("entity", name, "entity"), rng.integers(0, 40, n), rng.integers(0, 40, n)))
    out.append(RelationEdges(("entity", "has", "tag"), rng.integers(0, 40, 50), rng.integers(0, 6, 50)))
    return out


def test_types_batches_mix_the_relations_between_two_types_in_proportion():
    rels = _kg_rels()
    s = RelationBatchSchedule(rels, [1.0, 2.0, 1.0, 1.0], batch_size=64, seed=2, group_by="types")
    assert s.groups == [[0, 1, 2], [3]]
    # 300 + 2 * 70 + 5 = 445 entity->entity positives: 7 batches; 50 entity->tag: 1
    assert s.steps_per_epoch == 7 + 1
    drawn = {i: [] for i in range(4)}
    mixed = 0
    for first, h, t, r in s.epoch(0):
        if r is None:  # a group of one relation
            assert first == 3 and h.shape[0] == 50  # n_r positives, no cycling to a full batch
            drawn[3].append(np.stack([h.numpy(), t.numpy()], 1))
            continue
        mixed += 1
        assert first == 0 and r.shape == h.shape == t.shape and h.shape[0] <= 64
        for i in range(3):  # every positive is an edge of the relation it is labelled with
            m = (r == i).numpy()
            drawn[i].append(np.stack([h.numpy()[m], t.numpy()[m]], 1))
    assert mixed == 7
    for i, n in ((0, 300), (1, 140), (2, 5), (3, 50)):
        got = np.concatenate(drawn[i])
        assert got.shape[0] == n  # relation weights still set the positives per epoch
        edges = {(a, b) for a, b in zip(rels[i].src, rels[i].dst, strict=True)}
        assert all((a, b) in edges for a, b in got)
    # positives of relation a are each drawn once (a shuffled pass)
    assert len({tuple(x) for x in np.concatenate(drawn[0])}) == len({(a, b) for a, b in zip(rels[0].src, rels[0].dst)})


def test_types_batches_resume_mid_epoch_and_run_in_lockstep():
    rels = _kg_rels()
    s = RelationBatchSchedule(rels, [1.0] * 4, batch_size=32, seed=4, group_by="types")
    full = list(s.epoch(1))
    tail = list(s.epoch(1, start=5))
    assert len(tail) == len(full) - 5
    for (r1, h1, t1, x1), (r2, h2, t2, x2) in zip(full[5:], tail, strict=True):
        assert r1 == r2 and torch.equal(h1, h2) and torch.equal(t1, t2)
        assert (x1 is None and x2 is None) or torch.equal(x1, x2)
    a, b = (RelationBatchSchedule(rels, [1.0] * 4, batch_size=32, seed=4, rank=k, world_size=2, group_by="types")
            for k in (0, 1))
    assert [(r, h.shape[0]) for r, h, *_ in a.epoch(0)] == [(r, h.shape[0]) for r, h, *_ in b.epoch(0)]
