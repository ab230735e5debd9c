import json

import numpy as np
import torch

from graphrec.cli import main
from graphrec.eval.split import cold_item_split
from graphrec.run.config import TwHINConfig
from graphrec.run.directory import open_run, twhin_model
from graphrec.train.runs import fit
from graphrec.train.twhin import select_relations
from graphrec.train.twhin import make_optimizers
from graphrec.train.warm_start import (carry_optimizer_state, drift_report, previous_global_rows,
                                       previous_optimizer_state, previous_relation_rows, warm_start)

FAST = dict(dim=16, epochs=2, batch_size=256, lr=0.1)


def test_warm_start_from_an_older_graph(small_pins_graph, tmp_path, capsys):
    """The older graph lacks 20% of the pins (the newest); the newer one has them all."""
    new = small_pins_graph
    old = cold_item_split(new, "user:saves:pin", 0.2, out=tmp_path / "s").train
    fit(TwHINConfig(**FAST), old.path, tmp_path / "r1", use_ray=False)
    r1 = open_run(tmp_path / "r1").model
    cfg = TwHINConfig(**FAST)
    model = twhin_model(cfg, {t: new.num_nodes(t) for t in new.node_types}, [et for et, _ in select_relations(new, cfg)])
    source, counts = warm_start(model, new, r1, old)
    carried = source >= 0
    rows = old.lookup("pin", new.node_ids("pin"))
    known = np.flatnonzero(rows >= 0)
    torch.testing.assert_close(model.node_embeddings("pin")[known], r1.node_embeddings("pin")[rows[known]])
    torch.testing.assert_close(model.node_embeddings("user"), r1.node_embeddings("user"))
    assert counts["carried"] == sum(old.num_nodes(t) for t in old.node_types) and counts["relations"] == len(r1.edge_types)
    # a new pin starts from the mean of its neighbours the old run knew (its boards, author; no saves in the old run)
    v = int(np.flatnonzero(rows < 0)[0])
    nbrs = [model.global_ids(rel.dst_type, torch.from_numpy(np.asarray(rel.indices[rel.indptr[v]:rel.indptr[v + 1]],
                                                                          np.int64)))
            for rel in new.relations() if rel.src_type == "pin"]
    nbrs = torch.cat(nbrs)
    nbrs = nbrs[carried[nbrs]]
    expect = torch.stack([model.node_emb.weight[int(i)] for i in nbrs]).mean(0)
    torch.testing.assert_close(model.node_embeddings("pin")[v], expect)
    assert counts["from_neighbours"] > 0
    torch.testing.assert_close(model.relation_embedding(("user", "saves", "pin")),
                               r1.relation_embedding(("user", "saves", "pin")))
    # a model compared with itself has not drifted
    same = drift_report(r1, old, r1, old)
    assert same["mean_cosine"] > 0.9999 and same["knn_overlap@10"] == 1.0

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(json.dumps({"model": "twhin", **FAST}))
    capsys.readouterr()
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "frozen"), "--no-ray", "--init-from", str(tmp_path / "r1"), "--freeze-existing"]) == 0
    out = capsys.readouterr().out
    assert "drift from" in out and "mean cosine 1.000" in out and "kNN overlap@10 1.000" in out
    frozen = open_run(tmp_path / "frozen")
    torch.testing.assert_close(frozen.model.node_embeddings("pin")[known], r1.node_embeddings("pin")[rows[known]],
                               rtol=0, atol=0)
    ws = frozen.info["summary"]["warm_start"]
    assert ws["frozen"] and ws["drift"]["nodes"] == counts["carried"]
    assert {k: v for k, v in ws["init"].items() if k != "optimizer"} == counts
    assert ws["init"]["optimizer"].startswith("carried from ckpt-")
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "free"), "--no-ray", "--init-from", str(tmp_path / "r1")]) == 0
    d = open_run(tmp_path / "free").info["summary"]["warm_start"]["drift"]
    assert 0 < d["mean_cosine"] < 0.9999 and 0 <= d["knn_overlap@10"] <= 1 and set(d["by_type"]) >= {"pin", "user"}
    # refusals: exit 2, one line, nothing written
    capsys.readouterr()
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "bad"), "--no-ray", "--freeze-existing"]) == 2
    assert "freeze_existing needs init_from" in capsys.readouterr().err
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "bad"), "--no-ray", "--init-from", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    cfg_path.write_text(json.dumps({"model": "twhin", **FAST, "dim": 8}))
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "bad"), "--no-ray", "--init-from", str(tmp_path / "r1")]) == 2
    assert "this config trains dim 8" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def _older_and_newer(graph, tmp_path, **cfg):
    old = cold_item_split(graph, "user:saves:pin", 0.2, out=tmp_path / "s").train
    fit(TwHINConfig(**{**FAST, **cfg}), old.path, tmp_path / "r1", use_ray=False)
    return old, open_run(tmp_path / "r1")


def test_carried_rows_take_the_earlier_runs_optimizer_state(small_pins_graph, tmp_path):
    new = small_pins_graph
    old, r1 = _older_and_newer(new, tmp_path)
    sizes = [r1.model.node_emb.weight.shape[0], r1.model.rel_emb.weight.shape[0]]
    saved, how = previous_optimizer_state(r1, "adagrad", sizes)
    assert how.startswith("carried from ckpt-00002-") and len(saved) == 2
    # a checkpoint whose tables are not the earlier run's (e.g. copied from another run): fresh, and why
    assert previous_optimizer_state(r1, "adagrad", [sizes[0] + 1, sizes[1]]) == (
        None, f"fresh (ckpt-00002-000000000 holds optimizer rows [{sizes[0]}], the earlier run's table has "
              f"{sizes[0] + 1})")
    cfg = TwHINConfig(**FAST)
    model = twhin_model(cfg, {t: new.num_nodes(t) for t in new.node_types},
                        [et for et, _ in select_relations(new, cfg)], sparse=True)
    warm_start(model, new, r1.model, old)
    opts = make_optimizers(model, cfg)
    source = previous_global_rows(model, new, r1.model, old)
    rel_source = previous_relation_rows(model, r1.model)
    assert (source >= 0).sum() == sum(old.num_nodes(t) for t in old.node_types) and (source < 0).any()
    assert carry_optimizer_state(opts, saved, [source, rel_source]) == 2
    node_sum, old_sum = opts[0].state[model.node_emb.weight]["sum"], saved[0]["state"][0]["sum"]
    known = source >= 0
    torch.testing.assert_close(node_sum[known], old_sum[source[known]], rtol=0, atol=0)
    assert float(node_sum[known].mean()) > 0 and float(node_sum[~known].abs().max()) == 0  # new rows: fresh
    torch.testing.assert_close(opts[1].state[model.rel_emb.weight]["sum"][rel_source >= 0],
                               saved[1]["state"][0]["sum"][rel_source[rel_source >= 0]], rtol=0, atol=0)
    # another optimizer in the earlier run: nothing carried, and why
    assert previous_optimizer_state(r1, "sparse_adam", sizes) == (
        None, "fresh (the earlier run trained with optimizer 'adagrad', this one with 'sparse_adam')")


def test_adam_state_is_carried_before_its_first_step(small_pins_graph, tmp_path):
    """SparseAdam / Adam create their state lazily: the carried state must be one they step from."""
    new = small_pins_graph
    old, r1 = _older_and_newer(new, tmp_path, optimizer="sparse_adam", lr=0.01)
    saved, how = previous_optimizer_state(r1, "sparse_adam",
                                          [r1.model.node_emb.weight.shape[0], r1.model.rel_emb.weight.shape[0]])
    assert how.startswith("carried from")
    cfg = TwHINConfig(**{**FAST, "optimizer": "sparse_adam", "lr": 0.01})
    model = twhin_model(cfg, {t: new.num_nodes(t) for t in new.node_types},
                        [et for et, _ in select_relations(new, cfg)], sparse=True)
    opts = make_optimizers(model, cfg)
    carry_optimizer_state(opts, saved, [previous_global_rows(model, new, r1.model, old),
                                        previous_relation_rows(model, r1.model)])
    state = opts[0].state[model.node_emb.weight]
    assert state["step"] == saved[0]["state"][0]["step"] > 0
    before = model.node_emb.weight.detach().clone()
    loss = model.node_emb(torch.tensor([0, 1, 2])).pow(2).sum() + model.rel_emb.weight.pow(2).sum()
    loss.backward()
    for o in opts:
        o.step()
    assert not torch.equal(before[:3], model.node_emb.weight[:3]) and torch.equal(before[3:], model.node_emb.weight[3:])


def test_carried_optimizer_state_moves_old_vectors_less(small_pins_graph, tmp_path, capsys):
    """The point of carrying it: old rows keep their small steps, so they drift less than
    with fresh accumulators (full learning rate again); a run without checkpoints says so."""
    new = small_pins_graph
    _older_and_newer(new, tmp_path)
    cfg_path = tmp_path / "c.yaml"
    drift = {}
    for carry in (True, False):
        cfg_path.write_text(json.dumps({"model": "twhin", **FAST, "carry_optimizer_state": carry}))
        out = tmp_path / f"warm-{carry}"
        assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out", str(out),
                     "--no-ray", "--init-from", str(tmp_path / "r1")]) == 0
        ws = open_run(out).info["summary"]["warm_start"]
        drift[carry] = ws["drift"]["mean_cosine"]
        assert ws["init"]["optimizer"].startswith("carried from" if carry else "fresh (carry_optimizer_state: false)")
    assert drift[True] > drift[False]
    import shutil

    shutil.rmtree(tmp_path / "r1" / "checkpoints")
    cfg_path.write_text(json.dumps({"model": "twhin", **FAST}))
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "no-ckpt"), "--no-ray", "--init-from", str(tmp_path / "r1")]) == 0
    assert open_run(tmp_path / "no-ckpt").info["summary"]["warm_start"]["init"]["optimizer"].startswith(
        "fresh (no checkpoint left in")


def test_a_partitioned_warm_start_fills_the_tables_as_the_unpartitioned_one_does(small_pins_graph, tmp_path):
    """Partition by partition (PartitionWarmStart as PartitionTables.initialise's fill), the
    first commit of a partitioned run holds what warm_start gives an in-memory model: the
    carried vectors and Adagrad sums, the new nodes' neighbour means, the relations."""
    from graphrec.graph.partition import NodePartitioning, PartitionSpec
    from graphrec.run.tables import RELATIONS_EMB, RELATIONS_SUM, PartitionTables
    from graphrec.train.warm_start import PartitionWarmStart, matched_rows

    new = small_pins_graph
    old, r1 = _older_and_newer(new, tmp_path)
    cfg = TwHINConfig(**FAST)
    edge_types = [et for et, _ in select_relations(new, cfg)]
    model = twhin_model(cfg, {t: new.num_nodes(t) for t in new.node_types}, edge_types, sparse=True)
    source, counts = warm_start(model, new, r1.model, old)
    saved, _ = previous_optimizer_state(r1, "adagrad", [r1.model.node_emb.weight.shape[0],
                                                         r1.model.rel_emb.weight.shape[0]])

    part = NodePartitioning({t: new.num_nodes(t) for t in new.node_types}, PartitionSpec(3, 0, 0, 1))
    tables = PartitionTables(tmp_path / "tables", part, 16)
    warm = PartitionWarmStart(new, r1, "adagrad")
    relations = np.zeros((len(edge_types), 16), np.float32)
    relations_state = np.zeros_like(relations)
    warm.relations(edge_types, relations, relations_state)
    assert tables.initialise(0.1, 0, relations, {"epoch": 0}, fill=warm, relations_state=relations_state)
    assert warm.counts == counts and part.parts("pin") == 3
    filled = 0
    for t in new.node_types:
        rows = matched_rows(new, old, t)
        known = rows >= 0
        got, want = tables.table(t), model.node_embeddings(t).detach().numpy()
        np.testing.assert_array_equal(got[known], want[known])  # carried vectors
        new_index, _, n_carried = warm.means[t]
        has = np.flatnonzero(new_index >= 0)[n_carried.numpy() > 0]  # new nodes with carried neighbours
        np.testing.assert_allclose(got[has], want[has], rtol=0, atol=1e-6)
        filled += has.size
        state = np.empty((new.num_nodes(t), 16), np.float32)
        for p in range(part.parts(t)):
            state[part.members(t, p)] = tables.load(t, p)[1]
        old_sum = saved[0]["state"][0]["sum"].numpy()
        np.testing.assert_array_equal(state[known], old_sum[r1.model.offsets[t] + rows[known]])
        assert not state[~known].any()  # new rows: fresh accumulators
    assert filled == counts["from_neighbours"] > 0
    np.testing.assert_array_equal(tables.read(RELATIONS_EMB), model.rel_emb.weight.detach().numpy())
    known_rel = previous_relation_rows(model, r1.model).numpy()
    np.testing.assert_array_equal(tables.read(RELATIONS_SUM)[known_rel >= 0],
                                  saved[1]["state"][0]["sum"].numpy()[known_rel[known_rel >= 0]])


def test_partitioned_runs_warm_start_from_either_kind_of_run(small_pins_graph, tmp_path, capsys):
    """A partitioned earlier run (its vectors and Adagrad sums read from its tables) warm-starts
    a partitioned run with frozen old nodes (they end exactly where they were) and an
    unpartitioned one (its optimizer state carried from the tables too)."""
    new = small_pins_graph
    old = cold_item_split(new, "user:saves:pin", 0.2, out=tmp_path / "s").train
    cfg_path = tmp_path / "p.yaml"
    cfg_path.write_text(json.dumps({"model": "twhin", **FAST, "partitions": 2, "validation": {"source": "none"}}))
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(old.path), "--out",
                 str(tmp_path / "r1"), "--no-ray"]) == 0
    r1 = open_run(tmp_path / "r1")
    assert r1.partitioned
    capsys.readouterr()
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "r2"), "--no-ray", "--init-from", str(tmp_path / "r1"), "--freeze-existing"]) == 0
    assert "mean cosine 1.000" in capsys.readouterr().out
    r2 = open_run(tmp_path / "r2")
    ws = r2.info["summary"]["warm_start"]
    assert ws["frozen"] and ws["init"]["optimizer"].startswith("carried from its tables (version ")
    assert ws["init"]["carried"] == sum(old.num_nodes(t) for t in old.node_types) and ws["init"]["from_neighbours"] > 0
    for t in new.node_types:
        rows = old.lookup(t, new.node_ids(t))
        known = np.flatnonzero(rows >= 0)
        np.testing.assert_array_equal(r2.tables.table(t, r2.tables_manifest)[known],
                                      r1.tables.table(t, r1.tables_manifest)[rows[known]])
    cfg_path.write_text(json.dumps({"model": "twhin", **FAST}))
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "r3"), "--no-ray", "--init-from", str(tmp_path / "r1")]) == 0
    ws = open_run(tmp_path / "r3").info["summary"]["warm_start"]
    assert ws["init"]["optimizer"].startswith("carried from its tables") and 0 < ws["drift"]["mean_cosine"] < 1
    # an earlier run with a table file gone: one line naming it, exit 2, no run directory
    import shutil

    shutil.copytree(tmp_path / "r1", tmp_path / "r1-damaged")
    gone = sorted((tmp_path / "r1-damaged" / "partitions" / "files").rglob("*.npy"))[0]
    gone.unlink()
    capsys.readouterr()
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "r4"), "--no-ray", "--init-from", str(tmp_path / "r1-damaged")]) == 2
    err = capsys.readouterr().err
    assert f"{gone}: missing" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "r4").exists()


def test_partitions_fetched_from_remote_storage_are_cached_within_a_budget(small_pins_graph, tmp_path, monkeypatch):
    """NodeVectors over tables in remote storage (arrays fetched, not memory-mapped): a
    partition is fetched once while it fits in ``cache_bytes``; least recently used ones
    are dropped beyond it; gathers equal the tables' rows either way."""
    from graphrec.graph.partition import NodePartitioning, PartitionSpec
    from graphrec.run.tables import PartitionTables
    from graphrec.train.warm_start import NodeVectors

    part = NodePartitioning({"pin": 600}, PartitionSpec(3, 0, 0, 1))
    tables = PartitionTables(tmp_path / "t", part, 16)
    tables.initialise(0.1, 0, np.zeros((1, 16), np.float32), {"epoch": 0})
    fetched = []
    read = tables.read

    def remote_read(name, manifest=None):  # what a pyarrow.fs store returns: a fetched copy
        fetched.append(name)
        return np.array(read(name, manifest))

    monkeypatch.setattr(tables, "read", remote_read)
    whole = tables.table("pin")
    one_partition = 200 * 16 * 4
    for budget, expect in ((3 * one_partition, 3), (one_partition, 6)):
        fetched.clear()
        v = NodeVectors((tables, tables.head), cache_bytes=budget)
        ids = np.arange(600)
        for _ in range(2):
            np.testing.assert_array_equal(v.vectors("pin", ids), whole)
        assert len(fetched) == expect, (budget, fetched)
