import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from graphrec.errors import GraphrecError
from graphrec.infer.export import export_twhin, read_vectors
from graphrec.run.config import TwHINConfig
from graphrec.run.directory import open_run
from graphrec.train.runs import fit

ET = ("user", "saves", "pin")


def _train(graph, out, **kw):
    cfg = TwHINConfig(**{"dim": 8, "epochs": 1, "batch_size": 512,
                         "relations": {"*:*:*": 0, "user:saves:pin": 1, "user:follows_board:board": 1}, **kw})
    fit(cfg, graph.path, out, use_ray=False)
    return out


def test_round_trip_ids_and_vectors(small_pins_graph, tmp_path):
    run = _train(small_pins_graph, tmp_path / "run")
    emb = export_twhin(run, tmp_path / "emb")
    _run = open_run(run)
    model, store = _run.model, _run.store
    for t in store.node_types:
        ids, vecs = read_vectors(emb / "nodes" / f"{t}.parquet")
        assert (ids == store.original_ids(t)).all()  # original ids exactly, in order
        np.testing.assert_array_equal(vecs, model.node_embeddings(t).detach().numpy())
    tbl = pq.read_table(emb / "nodes" / "pin.parquet")
    assert str(tbl.schema.field("embedding").type) == "fixed_size_list<element: float>[8]"
    rel = pq.read_table(emb / "relations.parquet").to_pydict()
    assert rel["relation"] == ["user:saves:pin", "user:follows_board:board"]
    m = json.loads((emb / "manifest.json").read_text())
    assert m["score"] == "translation_dot" and m["dim"] == 8 and m["graph_checksum"] == store.checksum
    assert set(m["retrieval"]) == {"user:saves:pin", "user:follows_board:board"}  # default: relations from user
    assert m["training"]["epochs_run"] == 1


@pytest.mark.parametrize("score", ["translation_dot", "transe", "distmult", "complex"])
def test_retrieval_dot_orders_like_the_model(small_pins_graph, tmp_path, score):
    run = _train(small_pins_graph, tmp_path / "run", score=score)
    emb = export_twhin(run, tmp_path / "emb", retrieval=["user:saves:pin"])
    _run = open_run(run)
    model, store = _run.model, _run.store
    qid, q = read_vectors(emb / "retrieval" / "user__saves__pin" / "query.parquet")
    cid, c = read_vectors(emb / "retrieval" / "user__saves__pin" / "candidate.parquet")
    assert (qid == store.original_ids("user")).all() and (cid == store.original_ids("pin")).all()
    users = torch.arange(50)
    with torch.no_grad():
        model_scores = model.score_tails(ET, users).double().numpy()
    ip = q[:50].astype(np.float64) @ c.astype(np.float64).T
    # same ranking of all 600 candidates for every query
    for u in range(50):
        a, b = np.argsort(-ip[u], kind="stable"), np.argsort(-model_scores[u], kind="stable")
        # ties aside, the orders agree: compare the scores in each other's order
        assert np.all(np.diff(model_scores[u][a]) <= 1e-4), (score, u)
        assert np.all(np.diff(ip[u][b]) <= 1e-3), (score, u)


@pytest.mark.parametrize("score, extra", [("rotate", {}), ("transe", {"p_norm": 1})])
def test_no_inner_product_form_refused(small_pins_graph, tmp_path, score, extra):
    run = _train(small_pins_graph, tmp_path / "run", score=score, **extra)
    with pytest.raises(GraphrecError, match="no exact inner-product form"):
        export_twhin(run, tmp_path / "emb", retrieval=["user:saves:pin"])
    assert not (tmp_path / "emb").exists()
    emb = export_twhin(run, tmp_path / "emb2")  # default: node vectors only, retrieval skipped
    assert json.loads((emb / "manifest.json").read_text())["retrieval"] == {}


def test_export_refuses_changed_graph(small_pins_graph, tmp_path):
    run = _train(small_pins_graph, tmp_path / "run")
    info = json.loads((run / "run.json").read_text())
    info["graph_checksum"] = "0" * 64
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(GraphrecError, match="checksum"):
        export_twhin(run, tmp_path / "emb")


# ---------------------------------------------------------------- partitioned runs


def _files(emb):
    return sorted(str(p.relative_to(emb)) for p in emb.rglob("*.parquet"))


def _by_id(path):
    ids, vecs = read_vectors(path)
    assert len(set(ids.tolist())) == len(ids)
    return dict(zip(ids.tolist(), vecs, strict=True))


def _unpartitioned_copy(run_dir, out):
    """The same trained model as a plain (unpartitioned) run: its assembled state in model.pt."""
    from graphrec.run.directory import write_run

    run = open_run(run_dir)
    info = run.info
    write_run(out, "twhin", run.config.model_copy(update={"partitions": 1}), run.store, run.model.state_dict(),
              info["summary"], num_nodes=info["num_nodes"], edge_types=info["edge_types"],
              relation_weights=info["relation_weights"])
    return out


@pytest.mark.parametrize("score", ["translation_dot", "transe"])
def test_partitioned_export_is_the_assembled_models_export(small_pins_graph, tmp_path, score):
    """Acceptance: `graphrec export` of a partitioned run is identical in format to an
    unpartitioned run's — same files, schemas and manifest, the same (id, vector) rows
    (node and retrieval vectors) — only the row order follows the partitions."""
    part = _train(small_pins_graph, tmp_path / "part", score=score, partitions=2)
    whole = _unpartitioned_copy(part, tmp_path / "whole")
    a, b = export_twhin(part, tmp_path / "emb_part"), export_twhin(whole, tmp_path / "emb_whole")
    ma, mb = (json.loads((e / "manifest.json").read_text()) for e in (a, b))
    assert {k: v for k, v in ma.items() if k != "run"} == {k: v for k, v in mb.items() if k != "run"}
    assert set(ma["retrieval"]) == {"user:saves:pin", "user:follows_board:board"}
    assert _files(a) == _files(b) and len(_files(a)) == 4 + 1 + 4
    for f in _files(a):
        assert pq.read_schema(a / f) == pq.read_schema(b / f), f
        va, vb = _by_id(a / f), _by_id(b / f)
        assert va.keys() == vb.keys(), f
        np.testing.assert_allclose(np.stack([va[k] for k in vb]), np.stack(list(vb.values())), rtol=1e-6,
                                   atol=1e-6, err_msg=f)
    # unpartitioned: internal-id order; partitioned: partition by partition
    run, store = open_run(part), open_run(part).store
    for t in store.node_types:
        ids_a, _ = read_vectors(a / "nodes" / f"{t}.parquet")
        ids_b, _ = read_vectors(b / "nodes" / f"{t}.parquet")
        assert (ids_b == store.original_ids(t)).all()
        members = np.concatenate([run.tables.part.members(t, p) for p in range(run.tables.part.parts(t))])
        assert (ids_a == store.original_ids(t, members)).all()
    with pytest.raises(GraphrecError, match="relation not trained"):
        export_twhin(part, tmp_path / "bad", retrieval=["pin:in_board:user"])


def test_export_of_a_partitioned_run_never_materialises_a_whole_table(small_pins_graph, tmp_path, monkeypatch):
    """Memory: the export reads one partition at a time and never assembles a type —
    PartitionTables.table and TwHINRun's assembly are off limits, and the Python-heap
    peak while writing (tracemalloc: numpy arrays included, memory maps not) stays well
    under one table, whose partitions are a quarter of it."""
    import tracemalloc

    import graphrec.infer.export as export_module
    from graphrec.run.directory import TwHINRun
    from graphrec.run.tables import PartitionTables

    dim = 512  # a wide table (600 pins: 1.2 MB) against the Python heap's own noise; a light relation to train
    run = _train(small_pins_graph, tmp_path / "run", partitions=4, dim=dim,
                 relations={"*:*:*": 0, "user:follows_board:board": 1})
    table_bytes = max(small_pins_graph.num_nodes(t) for t in small_pins_graph.node_types) * dim * 4

    def refuse(*a, **k):
        raise AssertionError("a whole table was assembled during export")

    monkeypatch.setattr(PartitionTables, "table", refuse)
    monkeypatch.setattr(TwHINRun, "_assemble", refuse)
    write, peaks = export_module.export_embeddings, []

    def measured(*a, **k):
        tracemalloc.reset_peak()
        out = write(*a, **k)
        peaks.append(tracemalloc.get_traced_memory()[1])
        return out

    monkeypatch.setattr(export_module, "export_embeddings", measured)
    tracemalloc.start()
    try:
        emb = export_twhin(run, tmp_path / "emb")
    finally:
        tracemalloc.stop()
    manifest = json.loads((emb / "manifest.json").read_text())
    assert manifest["node_counts"]["pin"] == 600 and list(manifest["retrieval"]) == ["user:follows_board:board"]
    assert peaks and peaks[0] < table_bytes / 2, (peaks, table_bytes)


def test_read_vectors_by_internal_id_restores_the_store_order(small_pins_graph, tmp_path):
    from graphrec.infer.export import read_vectors_by_internal_id

    run = _train(small_pins_graph, tmp_path / "run", partitions=2)
    emb = export_twhin(run, tmp_path / "emb", retrieval=["user:saves:pin"])
    r = open_run(run)
    for t in ("user", "pin"):
        vecs = read_vectors_by_internal_id(emb / "nodes" / f"{t}.parquet", r.store, t)
        np.testing.assert_array_equal(vecs, r.model.node_embeddings(t).detach().numpy())
    q = read_vectors_by_internal_id(emb / "retrieval" / "user__saves__pin" / "query.parquet", r.store, "user")
    np.testing.assert_allclose(q, r.model.retrieval_vectors(ET)[0].numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(GraphrecError, match="exactly once"):
        read_vectors_by_internal_id(emb / "nodes" / "pin.parquet", r.store, "user")


def test_node_vectors_must_cover_each_node_once(small_pins_graph, tmp_path):
    from graphrec.infer.export import NodeVectors, export_embeddings

    pins = np.zeros((600, 4), np.float32)
    for bad in (lambda: [(np.arange(599), pins[:599])],  # one node missing
                lambda: [(np.arange(600), pins), (np.array([3]), pins[:1])],  # one twice
                lambda: [(np.arange(1, 601), pins)]):  # outside the type
        with pytest.raises(ValueError, match="pin"):
            export_embeddings(tmp_path / "emb", small_pins_graph, {"pin": NodeVectors(4, bad)}, {"model": "test"})
        assert not (tmp_path / "emb").exists()
    with pytest.raises(ValueError, match=r"expected \(600, 4\)"):
        export_embeddings(tmp_path / "emb", small_pins_graph, {"pin": NodeVectors(4, lambda: [(np.arange(600),
                                                                                                np.zeros((600, 3)))])},
                          {"model": "test"})
