import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from graphrec.sampling import (ImportanceNeighborhoods, NodeFeatureTable, PinSageBatches, PPRHardNegatives,
                               RandomWalkSampler, co_engagement_pairs, importance_neighbors)
from graphrec.sampling.pinsage import collate_identity, metapath_transition

PUP = ["pin:saved_by:user", "user:saves:pin"]
PBP = ["pin:in_board:board", "board:has_pin:pin"]


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


def test_metapath_transition_is_row_stochastic(small_pins_graph):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 1.0)])
    m = metapath_transition(small_pins_graph, s)
    np.testing.assert_allclose(np.asarray(m.sum(1)).ravel(), 1.0, rtol=1e-9)




@pytest.fixture(scope="module")
def hard(small_pins_graph):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 1.0)])
    return PPRHardNegatives(small_pins_graph, s, band=(0.1, 0.3), alpha=0.3, method="power")


def test_ppr_power_iteration_solves_the_linear_system(hard):
    n = hard.num_nodes
    q = np.array([0, 11, 42])
    x = hard.ppr(q)
    p = metapath_transition(hard.store, hard.sampler).toarray()
    exact = hard.alpha * np.linalg.inv(np.eye(n) - (1 - hard.alpha) * p)[q]  # rows: α e_q (I - (1-α)P)^-1
    np.testing.assert_allclose(x, exact, atol=1e-4)
    np.testing.assert_allclose(x.sum(1), 1.0, atol=1e-6)


def test_hard_negatives_come_from_the_band_and_never_equal_the_positive(hard):
    rng = np.random.default_rng(0)
    q = rng.integers(0, hard.num_nodes, 300)
    ranking = hard.ranking(q)
    band = ranking[:, hard.lo : hard.hi]
    pos = band[:, 0].copy()  # the worst case: the positive sits inside the band
    neg = hard.sample(q, pos, 6, rng)
    assert neg.shape == (300, 6)
    assert (neg != pos[:, None]).all()
    for i in range(300):
        assert set(neg[i].tolist()) <= set(band[i].tolist())
    assert hard.lo == int(0.1 * hard.num_nodes) and hard.hi == int(np.ceil(0.3 * hard.num_nodes))


def test_monte_carlo_hard_negatives_never_equal_the_positive(small_pins_graph):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0)], restart_prob=0.0)
    mc = PPRHardNegatives(small_pins_graph, s, band=(0.02, 0.1), method="montecarlo", mc_walks=50, mc_length=5)
    rng = np.random.default_rng(1)
    q = np.arange(0, 600, 3)
    pos = (q + 1) % 600
    neg = mc.sample(q, pos, 4, rng)
    assert (neg != pos[:, None]).all() and neg.min() >= 0 and neg.max() < 600


def _batches(store, nbh, epoch=0, hard=None, n_hard=0, feats=True):
    rel = store.relation("user:saves:pin")
    q, p = co_engagement_pairs(rel.indptr, rel.indices, rel.edge_attr("timestamp"), window=2)
    table = NodeFeatureTable(store, "pin") if feats else None
    return PinSageBatches(q[:2000], p[:2000], store.num_nodes("pin"), 256, 2, nbh, table, 50, hard, n_hard, epoch,
                          seed=3)


def test_batches_are_compact_subgraphs(small_pins_graph, hard):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 1.0)], restart_prob=0.5)
    nbh = importance_neighbors(s, np.arange(600), 10, 20, 2, np.random.default_rng(0))
    ds = _batches(small_pins_graph, nbh, hard=hard, n_hard=2)
    b = next(iter(ds))
    nodes = b.nodes.numpy()
    assert len(np.unique(nodes)) == nodes.shape[0]  # every node once
    targets = nodes[: b.num_targets]
    # the last block's neighbours are the targets' importance neighbours, re-indexed into the layer's nodes
    last = b.blocks[-1]
    layer1 = nodes[: b.blocks[0].num_dst]
    for i in range(0, b.num_targets, 17):
        got = sorted(layer1[j] for j in last.neighbors[i].tolist() if j >= 0)
        ref = sorted(x for x in nbh.neighbors[targets[i]].tolist() if x >= 0)
        assert got == ref
    assert b.hard.shape == (256, 2) and b.shared.shape == (50,)
    assert b.feats.categorical.shape[0] == nodes.shape[0]


def test_batches_do_not_depend_on_loader_workers(small_pins_graph):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0)], restart_prob=0.5)
    nbh = importance_neighbors(s, np.arange(600), 10, 20, 2, np.random.default_rng(0))
    ds = _batches(small_pins_graph, nbh, feats=False)
    inline = list(DataLoader(ds, batch_size=None, collate_fn=collate_identity, num_workers=0))
    background = list(DataLoader(ds, batch_size=None, collate_fn=collate_identity, num_workers=2))
    assert len(inline) == len(background) == len(ds)
    for a, b in zip(inline, background):
        assert torch.equal(a.nodes, b.nodes) and torch.equal(a.shared, b.shared) and torch.equal(a.query, b.query)


def test_neighborhoods_roundtrip(tmp_path):
    nb = ImportanceNeighborhoods(np.array([[1, -1]]), np.array([[1.0, 0.0]], np.float32))
    nb.save(tmp_path)
    back = ImportanceNeighborhoods.load(tmp_path)
    assert back.neighbors.tolist() == [[1, -1]] and len(back) == 1


def test_sampled_co_engagement_stays_in_window_and_user():
    from graphrec.sampling import CoEngagement

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
