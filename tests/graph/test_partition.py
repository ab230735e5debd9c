"""Node partitions and edge buckets (graph/partition.py)."""

import numpy as np
import pytest

from graphrec.errors import GraphrecError
from graphrec.graph.partition import EdgeBuckets, NodePartitioning, PartitionSpec


def test_assignment_is_balanced_seeded_and_a_bijection():
    spec = PartitionSpec(4, min_nodes=10, seed=3)
    p = NodePartitioning({"big": 103, "small": 9, "empty": 0}, spec)
    assert p.parts("big") == 4 and p.parts("small") == 1 and p.parts("empty") == 1
    assert p.sizes("big").tolist() == [26, 26, 26, 25]
    part, off = p.part("big"), p.offset("big")
    for k in range(4):  # members(k)[offset] is the node: rows of a partition table map back to global ids
        m = p.members("big", k)
        assert (part[m] == k).all() and (off[m] == np.arange(m.shape[0])).all()
    assert np.array_equal(np.sort(np.concatenate([p.members("big", k) for k in range(4)])), np.arange(103))
    again = NodePartitioning({"big": 103}, spec)
    assert np.array_equal(again.part("big"), part)  # the same for the same seed
    other = NodePartitioning({"big": 103}, PartitionSpec(4, min_nodes=10, seed=4))
    assert not np.array_equal(other.part("big"), part)
    assert NodePartitioning({"big": 103}, PartitionSpec(4, min_nodes=0)).parts("big") == 4
    assert NodePartitioning({"t": 3}, PartitionSpec(8)).parts("t") == 1  # smaller than P: whole, never empty
    with pytest.raises(GraphrecError, match="partitions must be >= 1"):
        PartitionSpec(0)


def test_regrouped_partitions_deal_every_storage_partition_once_per_epoch():
    """``regroup = k``: a type of at least P·k nodes is stored as P·k partitions and dealt
    into P groups of k, each storage partition in one group, the same deal for the same
    (seed, epoch) and another in another epoch, so that over the epochs every two storage
    partitions share a group; a type of P to P·k nodes keeps P fixed partitions and a
    whole type is one group [[0]]. k = 1: partition g is storage partition g."""
    spec = PartitionSpec(4, min_nodes=0, seed=0, regroup=3)
    part = NodePartitioning({"big": 1000, "mid": 7, "tiny": 3}, spec)
    assert (part.parts("big"), part.parts("mid"), part.parts("tiny")) == (12, 4, 1)
    assert part.groups("mid", 5).tolist() == [[0], [1], [2], [3]] and part.groups("tiny", 5).tolist() == [[0]]
    deals = [part.groups("big", e) for e in range(6)]
    for g in deals:
        assert g.shape == (4, 3) and sorted(g.ravel().tolist()) == list(range(12))
    assert np.array_equal(deals[2], NodePartitioning({"big": 1000}, spec).groups("big", 2))
    assert len({g.tobytes() for g in deals}) == 6
    met = np.zeros((12, 12), bool)
    for e in range(40):
        for g in part.groups("big", e):
            met[np.ix_(g, g)] = True
    assert met.all()
    fixed = NodePartitioning({"big": 1000}, PartitionSpec(4))
    assert fixed.groups("big", 3).tolist() == [[0], [1], [2], [3]]
    assert spec.key == "P4-min0-seed0-regroup3" and PartitionSpec(4).key == "P4-min0-seed0"
    with pytest.raises(GraphrecError, match="partition_regroup must be >= 1"):
        PartitionSpec(4, regroup=0)


def test_buckets_hold_every_edge_once_in_the_right_bucket(small_pins_graph, tmp_path):
    spec = PartitionSpec(3, min_nodes=100, seed=0)  # user (400) and pin (600) split, board/author (60, 40) not
    b = EdgeBuckets.open_or_build(small_pins_graph, spec, tmp_path / "b")
    part = b.partitioning
    bases = {r.edge_type: r for r in small_pins_graph.relations() if not r.is_reverse}
    for rel in small_pins_graph.relations():
        src_t, name, dst_t = rel.edge_type
        rb = b.relation(rel.edge_type)  # a reverse view: its base's buckets, transposed (not stored twice)
        assert (rb.src_parts, rb.dst_parts) == (part.parts(src_t), part.parts(dst_t))
        assert rb.sizes().sum() == rel.num_edges and rb.edge.shape[0] == rel.num_edges
        assert np.array_equal(np.sort(rb.edge), np.arange(rel.num_edges))  # every edge exactly once
        if rel.is_reverse:  # edge ids are the base's: its (dst, src) are this view's (src, dst)
            base = next(r for r in bases.values() if r.base_key == rel.base_key)
            d, s = base.coo()
            assert np.array_equal(rb.sizes(), b.relation(base.edge_type).sizes().T)
        else:
            s, d = rel.coo()
        for i in range(rb.src_parts):
            for j in range(rb.dst_parts):
                src, dst, edge = rb.bucket(i, j)
                assert np.array_equal(part.members(src_t, i)[src], s[edge])  # rows map back to the edge's nodes
                assert np.array_equal(part.members(dst_t, j)[dst], d[edge])
    with pytest.raises(GraphrecError, match="no buckets for relation"):
        b.relation(("pin", "liked_by", "user"))


def test_buckets_are_reused_checked_and_rebuilt(small_pins_graph, tmp_path):
    spec = PartitionSpec(2, seed=1)
    d = tmp_path / "b"
    EdgeBuckets.open_or_build(small_pins_graph, spec, d)
    stamp = (d / "manifest.json").stat().st_mtime_ns
    EdgeBuckets.open_or_build(small_pins_graph, spec, d)
    assert (d / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    victim = next(d.glob("*/src.npy"))
    victim.write_bytes(victim.read_bytes()[:-8])
    with pytest.raises(GraphrecError, match="truncated"):
        EdgeBuckets(small_pins_graph, spec, d)
    rebuilt = EdgeBuckets.open_or_build(small_pins_graph, spec, d)  # a damaged cache is rebuilt
    EdgeBuckets(small_pins_graph, spec, d, verify=True)
    assert rebuilt.relation(("user", "saves", "pin")).sizes().sum() == small_pins_graph.num_edges(("user", "saves", "pin"))
    with pytest.raises(GraphrecError, match="another graph or partitioning"):
        EdgeBuckets(small_pins_graph, PartitionSpec(2, seed=2), d)


def test_cli_partition_writes_beside_the_store_and_reuses(small_pins_graph, tmp_path, capsys):
    import shutil

    from graphrec.cli import main
    from graphrec.graph import GraphStore

    g = tmp_path / "g"
    shutil.copytree(small_pins_graph.path, g)
    assert main(["partition", str(g), "--partitions", "2", "--min-nodes", "100"]) == 0
    out = capsys.readouterr().out
    assert "user:saves:pin: 4 buckets" in out and "pin:in_board:board: 2 buckets" in out
    assert (g / "partitions" / "P2-min100-seed0" / "manifest.json").is_file()
    assert GraphStore(g, verify=True).checksum == small_pins_graph.checksum  # the store itself is unchanged
    # --regroup: the layout of a run with partition_regroup (user 400 and pin 600 nodes: 2 x 3 storage partitions)
    assert main(["partition", str(g), "--partitions", "2", "--min-nodes", "100", "--regroup", "3"]) == 0
    assert "user:saves:pin: 36 buckets" in capsys.readouterr().out
    assert (g / "partitions" / "P2-min100-seed0-regroup3" / "manifest.json").is_file()
