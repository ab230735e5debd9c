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
    cfg = TwHINConfig(dim=8, epochs=1, batch_size=512, relations={"*:*:*": 0, "user:saves:pin": 1,
                                                                  "user:follows_board:board": 1}, **kw)
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
