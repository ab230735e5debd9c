import numpy as np
import torch
from torch.utils.data import DataLoader

from graphrec.sampling.batches import PinSageBatches, collate_identity
from graphrec.sampling.features import NodeFeatureTable
from graphrec.sampling.positives import co_engagement_pairs
from graphrec.sampling.walks import RandomWalkSampler, importance_neighbors
from tests.sampling.conftest import PBP, PUP


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


def test_cold_start_simulation_hides_ids_and_swaps_in_side_neighbours(small_pins_graph):
    """``cold=(rate, side)``: about ``rate`` of the items are presented as cold in an
    epoch — ID row -1 and the side table's neighbours — the same items throughout the
    epoch, others as usual."""
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 0.5)], restart_prob=0.5)
    nbh = importance_neighbors(s, np.arange(600), 10, 20, 2, np.random.default_rng(0))
    side = importance_neighbors(RandomWalkSampler(small_pins_graph, [(PBP, 1.0)], restart_prob=0.5), np.arange(600),
                                10, 20, 2, np.random.default_rng(1))
    ds = _batches(small_pins_graph, nbh)
    ds.cold = (0.3, side)
    hidden = {}
    for b in ds:
        nodes, rows = b.nodes.numpy(), b.id_rows.numpy()
        assert ((rows == -1) | (rows == nodes)).all()
        for v, r in zip(nodes.tolist(), rows.tolist(), strict=True):
            assert hidden.setdefault(v, r == -1) == (r == -1)  # one decision per item and epoch
        layer1 = nodes[: b.blocks[0].num_dst]
        targets = nodes[: b.num_targets]
        for i in range(0, b.num_targets, 7):
            table = side if rows[i] == -1 else nbh
            got = sorted(layer1[j] for j in b.blocks[-1].neighbors[i].tolist() if j >= 0)
            assert got == sorted(x for x in table.neighbors[targets[i]].tolist() if x >= 0)
    assert 0.2 < np.mean(list(hidden.values())) < 0.4
