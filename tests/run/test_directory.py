"""open_run: one way to open any finished run; runs move with their graph; damaged
model files are named."""

import shutil

import numpy as np
import pytest
import torch

from graphrec.errors import GraphrecError
from graphrec.run.config import PinSageConfig, TwHINConfig
from graphrec.run.directory import PinSageRun, TwHINRun, open_run, run_model
from graphrec.train.runs import fit


@pytest.fixture(scope="module")
def twhin_run(small_pins_graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "twhin"
    fit(TwHINConfig(dim=8, epochs=1, batch_size=256), small_pins_graph.path, out, use_ray=False)
    return out


def test_open_run_of_either_model(twhin_run, small_pins_graph, tmp_path):
    run = open_run(twhin_run)
    assert isinstance(run, TwHINRun) and run_model(twhin_run) == "twhin"
    assert run.store.checksum == small_pins_graph.checksum and not run.model.training
    assert run.model.node_embeddings("pin").shape == (600, 8)
    with pytest.raises(GraphrecError, match="not pinsage"):
        open_run(twhin_run, expect="pinsage")
    cfg = PinSageConfig(item_type="pin", interactions="user:saves:pin", dim=8, hidden_dim=8, epochs=1, batch_size=256,
                        walks={"metapaths": [{"path": ["pin:saved_by:user", "user:saves:pin"]}], "num_walks": 5,
                               "top_t": 5}, loader_workers=0)
    fit(cfg, small_pins_graph.path, tmp_path / "ps", use_ray=False)
    ps = open_run(tmp_path / "ps", verify=True)
    assert isinstance(ps, PinSageRun) and ps.item_vectors.shape == (600, 8)
    assert ps.neighborhoods.neighbors.shape[0] == 600


def test_a_run_moved_with_its_graph_still_opens(twhin_run, small_pins_graph, tmp_path):
    shutil.copytree(small_pins_graph.path, tmp_path / "moved" / "graph")
    shutil.copytree(twhin_run, tmp_path / "moved" / "run")
    info = open_run(twhin_run).info
    info["graph"] = str(tmp_path / "gone")  # the absolute path no longer exists
    info["graph_relpath"] = "../graph"
    import json

    (tmp_path / "moved" / "run" / "run.json").write_text(json.dumps(info))
    run = open_run(tmp_path / "moved" / "run")
    assert run.store.path.resolve() == (tmp_path / "moved" / "graph").resolve()


def test_damaged_model_file_is_named(twhin_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(twhin_run, copy)
    data = bytearray((copy / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (copy / "model.pt").write_bytes(bytes(data))
    with pytest.raises(GraphrecError, match=r"model\.pt"):
        open_run(copy)
    (copy / "run.json").write_text("{not json")
    with pytest.raises(GraphrecError, match="not valid JSON"):
        open_run(copy)
    with pytest.raises(GraphrecError, match="no such run directory"):
        open_run(tmp_path / "nope")


def test_open_run_is_bitwise_the_trained_model(twhin_run):
    state = torch.load(twhin_run / "model.pt", weights_only=True)["model"]
    run = open_run(twhin_run)
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in state.items())
    assert np.isfinite(run.model.node_emb.weight.detach().numpy()).all()


# ---------------------------------------------------------------- partitioned TwHIN runs


@pytest.fixture(scope="module")
def partitioned_run(small_pins_graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "partitioned"
    fit(TwHINConfig(dim=8, epochs=1, batch_size=256, partitions=2), small_pins_graph.path, out, use_ray=False)
    return out


def test_a_partitioned_run_records_its_tables_and_keeps_only_relations_in_model_pt(partitioned_run):
    import json

    from graphrec.run.directory import RELATIONS_STATE

    info = json.loads((partitioned_run / "run.json").read_text())
    assert info["partitions"] == 2
    rec = info["partition_tables"]
    assert rec["path"] == "partitions" and rec["partitioning"] == {"num_partitions": 2, "min_nodes": 0, "seed": 0,
                                                                  "regroup": 1}
    assert rec["dim"] == 8 and isinstance(rec["version"], int)
    assert set(info["files"]) == {"model.pt", "partitions/checkpoint_version.json"}
    assert info["num_nodes"] == {"user": 400, "pin": 600, "board": 60, "author": 40} and len(info["edge_types"]) == 5
    state = torch.load(partitioned_run / "model.pt", weights_only=True)["model"]
    assert set(state) == {RELATIONS_STATE} and state[RELATIONS_STATE].shape == (5, 8)


def test_open_partitioned_run_streams_without_assembling_and_its_model_equals_the_tables(partitioned_run,
                                                                                        monkeypatch):
    from graphrec.run.tables import RELATIONS_EMB, PartitionTables

    def refuse(*a, **k):
        raise AssertionError("assembled a whole table")

    with monkeypatch.context() as m:
        m.setattr(PartitionTables, "table", refuse)
        m.setattr(TwHINRun, "_assemble", refuse)
        run = open_run(partitioned_run, verify=True)
        assert run.partitioned and run.tables_manifest.version == run.info["partition_tables"]["version"]
        part = run.tables.part
        for t in run.node_types:
            got = list(run.node_vector_chunks(t, max_rows=70))
            assert all(ids.shape[0] <= 70 and v.shape == (ids.shape[0], 8) and v.dtype == np.float32
                       for ids, v in got)
            ids = np.concatenate([i for i, _ in got])
            # partition by partition, in the tables' row order: each node exactly once
            np.testing.assert_array_equal(ids, np.concatenate([part.members(t, p) for p in range(part.parts(t))]))
            assert np.array_equal(np.sort(ids), np.arange(run.num_nodes[t]))
        rels = run.relation_vectors()
        assert list(rels) == run.edge_types
    model = run.model  # assembled on first use, kept
    assert model is run.model and not model.training
    for t in run.node_types:
        table = model.node_embeddings(t).detach().numpy()
        for p in range(part.parts(t)):
            emb, _ = run.tables.load(t, p, run.tables_manifest)
            np.testing.assert_array_equal(table[part.members(t, p)], emb)
    np.testing.assert_array_equal(model.rel_emb.weight.detach().numpy(),
                                  run.tables.read(RELATIONS_EMB, run.tables_manifest))
    for et, r in rels.items():
        assert torch.equal(model.relation_embedding(et), r)


def test_unpartitioned_run_chunks_are_slices_of_its_table(twhin_run):
    run = open_run(twhin_run)
    assert not run.partitioned and run.tables is None
    got = list(run.node_vector_chunks("pin", max_rows=256))
    assert [ids.shape[0] for ids, _ in got] == [256, 256, 88]
    np.testing.assert_array_equal(np.concatenate([i for i, _ in got]), np.arange(600))
    np.testing.assert_array_equal(np.concatenate([v for _, v in got]),
                                  run.model.node_embeddings("pin").detach().numpy())
    assert torch.equal(torch.stack(list(run.relation_vectors().values())), run.model.rel_emb.weight)
    with pytest.raises(GraphrecError, match="no node type 'nope'"):
        next(run.node_vector_chunks("nope"))


def test_partitioned_run_moves_and_damaged_or_changed_tables_are_named(partitioned_run, small_pins_graph, tmp_path):
    import json

    copy = tmp_path / "run"
    shutil.copytree(partitioned_run, copy)
    run = open_run(copy)  # the tables are found relative to the run directory
    assert run.tables.ckpt.storage.root == str((copy / "partitions").resolve())
    # a damaged table file: verify names it when it is read; nothing is read at open time
    name = run.tables.name("pin", 1, "emb")
    path = copy / "partitions" / run.tables_manifest.files[name].path
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged = open_run(copy, verify=True)
    with pytest.raises(GraphrecError, match=path.name):
        list(damaged.node_vector_chunks("pin"))
    # tables changed after the run finished (e.g. trained further): refused at open
    commit = copy / "partitions" / "checkpoint_version.json"
    doc = json.loads(commit.read_text())
    doc["meta"]["note"] = "changed"
    commit.write_text(json.dumps(doc))
    with pytest.raises(GraphrecError, match=r"checkpoint_version\.json: sha256 differs"):
        open_run(copy)
    shutil.rmtree(copy / "partitions")
    with pytest.raises(GraphrecError, match="partitioned run's tables"):
        open_run(copy)
    # a model.pt that is not a partitioned run's
    info = json.loads((partitioned_run / "run.json").read_text())
    other = tmp_path / "other"
    shutil.copytree(partitioned_run, other)
    from graphrec.run.checkpoint import save_checkpoint

    save_checkpoint(other, {"model": {"rel_emb.weight": torch.zeros(5, 8), "node_emb.weight": torch.zeros(3, 8)}},
                    name="model.pt")
    info["files"]["model.pt"] = (other / "model.pt.sha256").read_text().split()[0]
    (other / "run.json").write_text(json.dumps(info))
    with pytest.raises(GraphrecError, match=r"model\.pt: a partitioned run's model file holds"):
        open_run(other)
