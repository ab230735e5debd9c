import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.infer.export import read_vectors
from graphrec.run.config import PinSageConfig, RayConfig, load_config
from graphrec.run.directory import open_run
from graphrec.train.pinsage import hard_negatives_for_epoch
from graphrec.train.engine import FAULT_ENV
from graphrec.train.runs import fit
from tests.conftest import ROOT, assert_quiet_ray_output, assert_resumed_after_kill

WALKS = {"metapaths": [{"path": ["pin:saved_by:user", "user:saves:pin"]},
                       {"path": ["pin:in_board:board", "board:has_pin:pin"], "weight": 0.5}],
         "num_walks": 30, "top_t": 10}
FAST = dict(item_type="pin", interactions="user:saves:pin", walks=WALKS, dim=16, hidden_dim=16, id_dim=8, epochs=3,
            batch_size=256, lr=3e-3, warmup_steps=10, negatives={"shared": 64, "hard": {"max_per_query": 2}},
            loader_workers=0, threads=1)


def test_curriculum_schedule():
    cfg = PinSageConfig(**{**FAST, "negatives": {"hard": {"max_per_query": 3}}})
    assert [hard_negatives_for_epoch(cfg, e) for e in range(6)] == [0, 1, 2, 3, 3, 3]
    cfg = PinSageConfig(**{**FAST, "negatives": {"hard": {"max_per_query": 2, "schedule": "constant"}}})
    assert [hard_negatives_for_epoch(cfg, e) for e in range(3)] == [2, 2, 2]


def test_local_training_loss_falls_run_reloads_and_is_deterministic(small_pins_graph, tmp_path):
    info = fit(PinSageConfig(**FAST), small_pins_graph.path, tmp_path / "a", use_ray=False)
    hist = info["summary"]["history"]
    assert [h["hard_negatives"] for h in hist] == [0, 1, 2]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert all(0 <= h["valid_hr@10"] <= 1 for h in hist)
    run = open_run(tmp_path / "a")
    assert run.item_vectors.shape == (600, 16) and run.user_vectors.shape == (400, 16)
    np.testing.assert_allclose(np.linalg.norm(run.item_vectors, axis=1), 1.0, rtol=1e-5)
    assert run.neighborhoods.neighbors.shape == (600, 10)
    # the saved item vectors are the model's layer-wise embeddings over the saved neighbourhoods
    from graphrec.train.pinsage import item_embeddings

    again = item_embeddings(run.model, run.features(), run.neighborhoods)
    np.testing.assert_allclose(again.numpy(), run.item_vectors, atol=1e-6)
    # same seed, same run; a background loader worker changes nothing
    cfg_b = PinSageConfig(**{**FAST, "epochs": 1, "loader_workers": 1})
    b = fit(cfg_b, small_pins_graph.path, tmp_path / "b", use_ray=False)
    assert b["summary"]["history"][0]["loss"] == pytest.approx(hist[0]["loss"], rel=1e-6)
    with pytest.raises(GraphrecError, match="finished run"):
        fit(PinSageConfig(**FAST), small_pins_graph.path, tmp_path / "a", use_ray=False)


def test_local_resume_continues_from_checkpoint(small_pins_graph, tmp_path):
    fit(PinSageConfig(**{**FAST, "epochs": 1}), small_pins_graph.path, tmp_path / "run", use_ray=False)
    info = fit(PinSageConfig(**{**FAST, "epochs": 2}), small_pins_graph.path, tmp_path / "run",
                       use_ray=False, resume=True)
    assert info["summary"]["starts"] == [0, 1] and info["summary"]["epochs_run"] == 2


def test_config_errors(small_pins_graph, tmp_path):
    with pytest.raises(Exception, match="must start and end at item_type"):
        PinSageConfig(**{**FAST, "walks": {"metapaths": [{"path": ["user:saves:pin"]}]}})
    p = tmp_path / "c.yaml"
    p.write_text("model: pinsage\nwalks: {metapaths: [{path: [item:rated_by:user, user:rated:item]}], top_tt: 5}\n")
    with pytest.raises(GraphrecError, match=r"walks\.top_tt: unknown key"):
        load_config(p, PinSageConfig)
    bad = PinSageConfig(**{**FAST, "walks": {**WALKS, "metapaths": [{"path": ["pin:liked_by:user", "user:saves:pin"]}]}})
    with pytest.raises(GraphrecError, match="pin:liked_by:user"):
        fit(bad, small_pins_graph.path, tmp_path / "r", use_ray=False)
    assert not (tmp_path / "r").exists()
    for cfg in ("pinsage-ml100k.yaml", "pinsage-pinterest.yaml"):
        load_config(ROOT / "configs" / cfg, PinSageConfig)


def test_cli_train_export_evaluate(small_pins_graph, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({**FAST, "model": "pinsage", "epochs": 2}))
    assert main(["-q", "split", str(small_pins_graph.path), "--relation", "user:saves:pin", "--out", str(tmp_path / "s")]) == 0
    assert main(["-q", "train", "pinsage", "--config", str(cfg), "--graph", str(tmp_path / "s" / "train"),
                 "--out", str(tmp_path / "run"), "--no-ray"]) == 0
    assert main(["-q", "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "emb")]) == 0
    m = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert m["model"] == "pinsage" and m["node_counts"] == {"pin": 600, "user": 400}
    ids, vecs = read_vectors(tmp_path / "emb" / "nodes" / "pin.parquet")
    run = open_run(tmp_path / "run")
    np.testing.assert_array_equal(ids, run.store.node_ids("pin").to_numpy())
    np.testing.assert_array_equal(vecs, run.item_vectors)
    q_ids, q = read_vectors(tmp_path / "emb" / "retrieval" / "user__saves__pin" / "query.parquet")
    _, c = read_vectors(tmp_path / "emb" / "retrieval" / "user__saves__pin" / "candidate.parquet")
    np.testing.assert_array_equal(q, run.user_vectors)
    np.testing.assert_array_equal(c, run.item_vectors)
    capsys.readouterr()
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--split", str(tmp_path / "s"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    ps, pop = res["models"]["pinsage"], res["models"]["popularity"]
    assert 0 < ps["user_to_item"]["recall@20"] <= 1 and 0 < ps["item_to_item"]["hit@10"] <= 1
    assert ps["user_to_item"]["users"] == pop["user_to_item"]["users"] > 0 and "new_items" in res["protocols"]["user_to_item"]
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--split", str(tmp_path / "s")]) == 0
    table = capsys.readouterr().out
    assert "popularity" in table and "recall@20" in table and "protocol: new_items" in table
    # a mistyped config key: exit 2, message names the key, nothing written
    cfg.write_text("model: pinsage\nwalks: {metapaths: [{path: [pin:saved_by:user, user:saves:pin]}]}\nepochz: 3\n")
    assert main(["-q", "train", "pinsage", "--config", str(cfg), "--graph", str(tmp_path / "s" / "train"),
                 "--out", str(tmp_path / "run2"), "--no-ray"]) == 2
    assert "epochz: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()
    assert main(["-q", "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "emb2"),
                 "--retrieval", "user:follows_board:board"]) == 2
    assert "interaction relation" in capsys.readouterr().err and not (tmp_path / "emb2").exists()
    # sharded layer-wise inference -> export -> index -> search / recommend
    assert main(["-q", "infer", "--run", str(tmp_path / "run"), "--shard-size", "128"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "run" / "inference" / "embeddings.npy"), run.item_vectors, atol=1e-5)
    assert main(["-q", "export", "--run", str(tmp_path / "run"), "--inference", str(tmp_path / "run" / "inference"),
                 "--out", str(tmp_path / "emb3")]) == 0
    assert "sharded layer-wise" in json.loads((tmp_path / "emb3" / "manifest.json").read_text())["item_vectors"]
    assert main(["-q", "index", "--embeddings", str(tmp_path / "emb3"), "--target", "pin", "--query", "user:saves:pin",
                 "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    pin0 = str(ids[0])
    assert main(["-q", "search", "--index", str(tmp_path / "idx"), "--id", pin0, "--id", "no-such-pin", "--k", "5",
                 "--json"]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines() if line.strip()]
    assert len(rows) == 5 and all(str(r["id"]) != pin0 for r in rows) and "unknown id: no-such-pin" in out.err
    expect = np.argsort(-(vecs @ vecs[0]), kind="stable")[1:6]
    assert [str(r["id"]) for r in rows] == [str(i) for i in ids[expect]]
    users = tmp_path / "users.txt"
    users.write_text(f"{q_ids[0]}\n{q_ids[1]}\nghost\n")
    assert main(["-q", "recommend", "--index", str(tmp_path / "idx"), "--users", str(users), "--k", "10",
                 "--exclude-seen", str(tmp_path / "s" / "train"), "--out", str(tmp_path / "cands.parquet")]) == 0
    assert "1 unknown user id(s) skipped: ghost" in capsys.readouterr().err
    import pandas as pd

    cands = pd.read_parquet(tmp_path / "cands.parquet")
    assert len(cands) == 20 and list(cands.columns) == ["user", "rank", "item", "score"]
    train = open_run(tmp_path / "run").store.relation("user:saves:pin")
    seen = set(np.asarray(train.indices[train.indptr[0]:train.indptr[1]]).tolist())
    u0 = cands[cands.user == q_ids[0]]
    assert not seen & set(run.store.lookup("pin", u0.item.to_numpy()).tolist())
    assert (np.diff(u0.score.to_numpy()) <= 1e-6).all() and u0["rank"].tolist() == list(range(1, 11))


@pytest.mark.slow
def test_ray_two_workers_loss_falls_and_worker_killed_resumes(small_pins_graph, tmp_path, monkeypatch, capfd):
    from graphrec import ray_env

    monkeypatch.delenv(ray_env.DEBUG_ENV, raising=False)
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, json.dumps({"epoch": 2, "rank": 1, "marker": str(marker)}))
    cfg = PinSageConfig(**{**FAST, "epochs": 4}, ray=RayConfig(workers=2, max_failures=3))
    info = fit(cfg, small_pins_graph.path, tmp_path / "run", use_ray=True)
    out = capfd.readouterr()
    assert_quiet_ray_output(out.out + out.err, "epoch 3: loss")
    s = info["summary"]
    assert marker.read_text() == "killed"
    assert s["world_size"] == 2 and all(h["workers"] == 2 for h in s["history"])
    assert_resumed_after_kill(s["starts"], 2)  # from a checkpoint, not from scratch
    assert [h["epoch"] for h in s["history"]] == list(range(4))
    assert s["history"][-1]["loss"] < s["history"][0]["loss"]
    assert open_run(tmp_path / "run").item_vectors.shape == (600, 16)
    _ = torch


def test_per_batch_neighborhoods(small_pins_graph, tmp_path):
    cfg = PinSageConfig(**{**FAST, "epochs": 1, "walks": {**WALKS, "refresh": "per_batch"}, "loader_workers": 1})
    info = fit(cfg, small_pins_graph.path, tmp_path / "run", use_ray=False)
    assert info["summary"]["history"][0]["loss"] > 0


def test_learned_user_vectors(small_pins_graph, tmp_path):
    cfg = PinSageConfig(**{**FAST, "epochs": 2, "user_vectors": {"kind": "learned"}})
    info = fit(cfg, small_pins_graph.path, tmp_path / "run", use_ray=False)
    hist = info["summary"]["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    run = open_run(tmp_path / "run")
    u = run.user_vectors
    assert u.shape == (400, 16)
    deg = np.diff(np.asarray(small_pins_graph.relation("user:saves:pin").indptr))
    np.testing.assert_allclose(np.linalg.norm(u[deg > 0], axis=1), 1.0, rtol=1e-5)
    # trained towards the users' own items: they score above the average item
    rel = small_pins_graph.relation("user:saves:pin")
    src, dst = rel.coo()
    own = (u[src] * run.item_vectors[dst]).sum(1).mean()
    assert own > float((u[deg > 0] @ run.item_vectors.T).mean()) + 0.05


def test_per_interaction_positives(small_pins_graph, tmp_path):
    cfg = PinSageConfig(**{**FAST, "epochs": 2, "positives": {"window": 10, "sampling": "per_interaction"}})
    info = fit(cfg, small_pins_graph.path, tmp_path / "run", use_ray=False)
    s = info["summary"]
    n_inter = small_pins_graph.relation("user:saves:pin").num_edges
    n_held = round(0.02 * n_inter)  # interactions held out as validation queries
    assert s["train_pairs"] == n_inter - n_held  # one partner per training interaction and epoch
    assert 0.9 * n_held <= s["heldout_pairs"] <= n_held
    assert s["history"][-1]["loss"] < s["history"][0]["loss"]


def test_pair_hit_rate_in_blocks_equals_the_full_score_matrix():
    """Validation counts ranks block by block (no [Q, N] matrix) with the full matrix's
    result, whatever the block sizes (the query excluded even across block edges)."""
    import numpy as np
    import torch

    from graphrec.train.pinsage import pair_hit_rate

    rng = np.random.default_rng(1)
    emb = torch.randn(103, 8)
    q, p = rng.integers(0, 103, 57), rng.integers(0, 103, 57)
    s = emb[torch.from_numpy(q)] @ emb.T
    s[torch.arange(57), torch.from_numpy(q)] = float("-inf")
    rank = 1 + (s > s[torch.arange(57), torch.from_numpy(p)][:, None]).sum(1)
    want = (float((rank <= 10).double().mean()), float((1.0 / rank.double()).mean()))
    for qb, cb in ((256, 65_536), (5, 7), (1, 1), (57, 103)):
        got = pair_hit_rate(emb, q, p, k=10, query_block=qb, candidate_block=cb)
        assert got == pytest.approx(want, abs=1e-12), (qb, cb)


def test_cold_start_split_infer_on_a_newer_graph_export_evaluate(small_pins_graph, tmp_path, capsys):
    """The inductive path end to end: a cold-item split, a hybrid run (ID dropout, cold
    simulation, a pin->board->pin side metapath), `infer --graph` on the graph holding
    the cold pins, export of that graph's ids, and the cold_items protocol."""
    from graphrec.eval.split import load_split

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({**FAST, "model": "pinsage", "epochs": 2, "id_dropout": 0.3, "cold_simulation": 0.3}))
    s = tmp_path / "s"
    assert main(["-q", "split", str(small_pins_graph.path), "--relation", "user:saves:pin", "--cold-items", "0.1",
                 "--out", str(s)]) == 0
    split = load_split(s)
    cold_ids = split.cold_graph().original_ids("pin", split.cold_item_ids("test"))
    assert main(["-q", "train", "pinsage", "--config", str(cfg), "--graph", str(s / "train"), "--out",
                 str(tmp_path / "run"), "--no-ray"]) == 0
    run = open_run(tmp_path / "run")
    assert run.model.num_nodes == split.train.num_nodes("pin") < 600
    # on the run's own graph, inductive inference is the transductive one
    assert main(["-q", "infer", "--run", str(tmp_path / "run"), "--graph", str(s / "train"), "--out",
                 str(tmp_path / "same")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "same" / "embeddings.npy"), run.item_vectors, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "same" / "user_embeddings.npy"), run.user_vectors, atol=1e-5)
    # on the newer graph: every pin, the cold ones embedded from features + board neighbours
    assert main(["-q", "infer", "--run", str(tmp_path / "run"), "--graph", str(s / "cold_graph"), "--out",
                 str(tmp_path / "inf")]) == 0
    emb = np.load(tmp_path / "inf" / "embeddings.npy")
    assert emb.shape == (600, 16) and np.isfinite(emb).all()
    cold_rows = split.cold_item_ids("test")
    assert np.linalg.norm(emb[cold_rows], axis=1).min() > 0.1 and len(np.unique(emb[cold_rows].round(4), axis=0)) > 1
    assert main(["-q", "export", "--run", str(tmp_path / "run"), "--inference", str(tmp_path / "inf"), "--out",
                 str(tmp_path / "emb")]) == 0
    ids, vecs = read_vectors(tmp_path / "emb" / "nodes" / "pin.parquet")
    assert set(cold_ids.tolist()) <= set(ids.tolist()) and len(ids) == 600
    m = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert m["graph_checksum"] == split.cold_graph().checksum and m["node_counts"]["pin"] == 600
    q_ids, _ = read_vectors(tmp_path / "emb" / "retrieval" / "user__saves__pin" / "candidate.parquet")
    assert len(q_ids) == 600
    capsys.readouterr()
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--split", str(s), "--inference",
                 str(tmp_path / "inf"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["models"]
    cold = res["pinsage"]["cold_items"]
    assert cold["candidates"] == len(cold_rows) and cold["users"] > 0 and 0 <= cold["recall@10"] <= 1
    assert set(res) >= {"pinsage", "popularity", "content (features)", "content (features+graph)", "random"}
    assert res["random"]["cold_items"]["recall@10"] == pytest.approx(min(10 / len(cold_rows), 1.0), abs=0.05)
    assert 0 < res["pinsage"]["user_to_item"]["recall@20"] <= 1  # warm quality of the same run
    # refusals: the run's own inference is not of the cold graph; a non-cold split takes no --inference
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--split", str(s), "--inference",
                 str(tmp_path / "same")]) == 2
    assert "not the split's" in capsys.readouterr().err
    assert main(["-q", "export", "--run", str(tmp_path / "run"), "--inference", str(tmp_path / "inf"), "--graph",
                 str(s / "train"), "--out", str(tmp_path / "emb2")]) == 2
    assert "leave --graph out" in capsys.readouterr().err and not (tmp_path / "emb2").exists()
