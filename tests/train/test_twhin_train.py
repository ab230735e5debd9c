import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.models.twhin import TwHIN
from graphrec.eval import random_split
from graphrec.run.config import RayConfig, TwHINConfig, load_config
from graphrec.train.evaluate import link_prediction_on_split
from graphrec.run.directory import open_run
from graphrec.train.engine import FAULT_ENV
from graphrec.train.runs import fit
from graphrec.train.twhin import TwHINLoss, select_relations
from tests.conftest import ROOT, assert_quiet_ray_output, assert_resumed_after_kill

FAST = dict(dim=16, epochs=4, batch_size=256, lr=0.1)


def test_local_training_loss_falls_and_run_reloads(small_pins_graph, tmp_path):
    info = fit(TwHINConfig(**FAST), small_pins_graph.path, tmp_path / "run", use_ray=False)
    losses = [h["loss"] for h in info["summary"]["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert info["graph_checksum"] == small_pins_graph.checksum
    model = open_run(tmp_path / "run").model
    assert model.node_embeddings("pin").shape == (600, 16)
    # a finished run is never silently replaced
    with pytest.raises(GraphrecError, match="finished run"):
        fit(TwHINConfig(**FAST), small_pins_graph.path, tmp_path / "run", use_ray=False)


def test_deterministic_given_seed(small_pins_graph, tmp_path):
    a = fit(TwHINConfig(**{**FAST, "epochs": 1}), small_pins_graph.path, tmp_path / "a", use_ray=False)
    b = fit(TwHINConfig(**{**FAST, "epochs": 1}), small_pins_graph.path, tmp_path / "b", use_ray=False)
    assert a["summary"]["history"][0]["loss"] == b["summary"]["history"][0]["loss"]
    ma = open_run(tmp_path / "a").model
    mb = open_run(tmp_path / "b").model
    assert torch.equal(ma.node_emb.weight, mb.node_emb.weight)


def test_relation_weights_and_patterns(small_pins_graph):
    cfg = TwHINConfig(relations={"*:*:*": 0, "user:saves:pin": 2.0, "user:follows_*:*": 0.5})
    sel = dict(select_relations(small_pins_graph, cfg))
    assert sel == {("user", "saves", "pin"): 2.0, ("user", "follows_board", "board"): 0.5,
                   ("user", "follows_author", "author"): 0.5}


def test_edge_weights_from_attribute_and_recency(small_pins_graph, tmp_path):
    from graphrec.train.twhin import edge_weights

    et = ("user", "saves", "pin")
    rel = small_pins_graph.relation(et)
    assert edge_weights(small_pins_graph, et, TwHINConfig()) is None
    cfg = TwHINConfig(edge_weights={"user:saves:*": {"recency_half_life": 2.0, "recency_floor": 0.2}})
    w = edge_weights(small_pins_graph, et, cfg)
    ts = np.asarray(rel.edge_attr("timestamp"))
    for u in (0, 7, 123):  # per user: the latest save weighs 1, each older one by its rank
        lo, hi = rel.indptr[u], rel.indptr[u + 1]
        order = np.lexsort((np.arange(hi - lo), ts[lo:hi]))[::-1]  # latest first
        age = np.empty(hi - lo)
        age[order] = np.arange(hi - lo)
        np.testing.assert_allclose(w[lo:hi], 0.2 + 0.8 * 0.5 ** (age / 2.0))
    with pytest.raises(GraphrecError, match="no edge attribute 'stars'"):
        edge_weights(small_pins_graph, et, TwHINConfig(edge_weights={"*:*:*": {"attribute": "stars"}}))
    # sampled training runs with the weights
    info = fit(TwHINConfig(**{**FAST, "epochs": 1}, edge_weights={"user:saves:pin": {"recency_half_life": 5}}),
                     small_pins_graph.path, tmp_path / "run", use_ray=False)
    assert info["summary"]["history"][0]["loss"] > 0


def test_early_stopping_on_holdout(small_pins_graph, tmp_path):
    cfg = TwHINConfig(**{**FAST, "epochs": 30, "lr": 0.5}, holdout_fraction=0.1, patience=1)
    info = fit(cfg, small_pins_graph.path, tmp_path / "run", use_ray=False)
    s = info["summary"]
    assert all("valid_sampled_mrr" in h for h in s["history"])
    assert s["stopped_early"] and s["epochs_run"] < 30
    assert s["best_valid_sampled_mrr"] == max(h["valid_sampled_mrr"] for h in s["history"])


def test_local_resume_continues_from_checkpoint(small_pins_graph, tmp_path):
    fit(TwHINConfig(**{**FAST, "epochs": 2}), small_pins_graph.path, tmp_path / "run", use_ray=False)
    info = fit(TwHINConfig(**FAST), small_pins_graph.path, tmp_path / "run", use_ray=False, resume=True)
    assert info["summary"]["starts"] == [0, 2] and info["summary"]["epochs_run"] == 4


def test_link_prediction_beats_random(small_pins_graph, tmp_path):
    sp = random_split(small_pins_graph, fractions=(0.9, 0.05, 0.05), out=tmp_path / "split")
    cfg = TwHINConfig(dim=32, epochs=8, batch_size=256, lr=0.2, relations={"*:*:*": 0, "user:saves:pin": 1})
    fit(cfg, sp.train.path, tmp_path / "run", use_ray=False)
    model = open_run(tmp_path / "run").model
    from graphrec.eval import load_split

    res = link_prediction_on_split(model, load_split(tmp_path / "split"))
    # random ranking over 600 pins / 400 users gives MRR ~ 0.01
    assert res["mrr"] > 0.03 and 0 <= res["hits@1"] <= res["hits@3"] <= res["hits@10"] <= 1
    assert set(res["per_relation"]) == {"user:saves:pin"}


def test_config_errors_name_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("dim: 8\nnegatives: {uniform: 5, in_bach: true}\n")
    with pytest.raises(GraphrecError, match=r"negatives\.in_bach: unknown key"):
        load_config(p)
    p.write_text("dim: eight\n")
    with pytest.raises(GraphrecError, match=r"dim: "):
        load_config(p)
    for cfg in ("twhin-ml100k.yaml", "twhin-pinterest.yaml", "twhin-kg.yaml"):
        load_config(ROOT / "configs" / cfg)


@pytest.mark.slow
def test_ray_two_workers_train_and_a_killed_worker_resumes_from_checkpoint(small_pins_graph, tmp_path, monkeypatch,
                                                                            capfd):
    from graphrec import ray_env

    monkeypatch.delenv(ray_env.DEBUG_ENV, raising=False)
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, json.dumps({"epoch": 3, "rank": 1, "marker": str(marker)}))
    cfg = TwHINConfig(**{**FAST, "epochs": 5}, ray=RayConfig(workers=2, max_failures=3))
    info = fit(cfg, small_pins_graph.path, tmp_path / "run", use_ray=True)
    out = capfd.readouterr()
    assert_quiet_ray_output(out.out + out.err)  # the user sees graphrec's lines, not Ray's chatter
    assert marker.read_text() == "killed"  # the worker really died once
    assert_resumed_after_kill(info["summary"]["starts"], 3)  # from a reported checkpoint, not from scratch
    hist = info["summary"]["history"]
    assert [h["epoch"] for h in hist] == list(range(5))
    assert info["summary"]["world_size"] == 2 and all(h["workers"] == 2 for h in hist)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert (tmp_path / "run" / "model.pt").is_file()


def test_cli_train_export_evaluate(small_pins_graph, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 8\nepochs: 2\nbatch_size: 256\n")
    assert main(["-q", "split", str(small_pins_graph.path), "--relation", "user:saves:pin", "--out", str(tmp_path / "s")]) == 0
    assert main(["-q", "train", "twhin", "--config", str(cfg), "--graph", str(tmp_path / "s" / "train"),
                 "--out", str(tmp_path / "run"), "--no-ray"]) == 0
    assert main(["-q", "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "emb"),
                 "--retrieval", "user:saves:pin", "--retrieval", "user:follows_board:board"]) == 0
    capsys.readouterr()
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--split", str(tmp_path / "s"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    u2i = res["models"]["twhin"]["user_to_item"]
    assert 0 <= u2i["recall@20"] <= 1 and u2i["users"] > 0 and "popularity" in res["models"]
    assert main(["-q", "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "emb2"),
                 "--retrieval", "user:nope:pin"]) == 2
    assert "not trained" in capsys.readouterr().err
    assert not (tmp_path / "emb2").exists()
    _ = np


def test_unfinished_run_checkpoints_are_not_discarded(small_pins_graph, tmp_path):
    fit(TwHINConfig(**{**FAST, "epochs": 1}), small_pins_graph.path, tmp_path / "run", use_ray=False)
    (tmp_path / "run" / "model.pt").unlink()  # as if the run had crashed before finishing
    with pytest.raises(GraphrecError, match="unfinished run"):
        fit(TwHINConfig(**FAST), small_pins_graph.path, tmp_path / "run", use_ray=False)
    assert any((tmp_path / "run" / "checkpoints").iterdir())


# ---- knowledge-graph link prediction: early stopping on the split's valid triples ------

KG = dict(score="complex", dim=16, batch_size=64, lr=0.5, negatives={"uniform": 0, "exhaustive_max_nodes": 1000,
                                                                     "in_batch": False})


def _valid_mrr(run, cfg):
    from graphrec.train.twhin import build_validation, resolve_validation_source

    _run = open_run(run)

    model, store = _run.model, _run.store
    source, split = resolve_validation_source(cfg, store)
    return build_validation(cfg, store, model.edge_types, source, split, None).mrr(model)


def test_early_stopping_on_split_valid_filtered_mrr_keeps_the_best_state(kg_split, tmp_path):
    cfg = TwHINConfig(**KG, epochs=60, validation={"source": "split"}, patience=2)
    info = fit(cfg, kg_split / "split" / "train", tmp_path / "run", use_ray=False)
    s = info["summary"]
    curve = [h["valid_mrr"] for h in s["history"]]
    from graphrec.eval import load_split

    n_valid = sum(len(v[0]) for v in load_split(kg_split / "split").heldout_triples("valid").values())
    assert s["validation"] == {"source": "split", "metric": "filtered_mrr", "triples": n_valid, "every_epochs": 1}
    assert s["stopped_early"] and len(curve) < 60
    assert s["best_epoch"] == int(np.argmax(curve)) and s["best_valid_mrr"] == max(curve)
    assert curve[-1] < max(curve)  # stopped after worse epochs...
    assert _valid_mrr(tmp_path / "run", cfg) == pytest.approx(max(curve), abs=1e-12)  # ...but saved the best
    assert max(curve) > 0.3  # random ranking of 60 entities: MRR ~0.08
    from graphrec.train.runs import summarize

    assert f"best valid MRR {max(curve):.4f} at epoch {s['best_epoch']} (the state saved)" in summarize(info)


def test_early_stopping_best_state_survives_a_resume(kg_split, tmp_path):
    cfg = TwHINConfig(**KG, epochs=6, validation={"source": "split"}, patience=100)
    fit(cfg.model_copy(update={"epochs": 3}), kg_split / "split" / "train", tmp_path / "run", use_ray=False)
    info = fit(cfg, kg_split / "split" / "train", tmp_path / "run", use_ray=False, resume=True)
    s = info["summary"]
    assert s["starts"] == [0, 3] and len(s["history"]) == 6
    assert _valid_mrr(tmp_path / "run", cfg) == pytest.approx(s["best_valid_mrr"], abs=1e-12)


def test_validation_source_resolution(kg_split, tmp_path):
    graph = kg_split / "graph"  # not a split's train graph
    with pytest.raises(GraphrecError, match="not the train/ graph of a split"):
        fit(TwHINConfig(**KG, epochs=1, validation={"source": "split"}), graph, tmp_path / "a", use_ray=False)
    with pytest.raises(GraphrecError, match="holdout_fraction is 0"):
        fit(TwHINConfig(**KG, epochs=1, validation={"source": "auto"}), graph, tmp_path / "b", use_ray=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything is written
    info = fit(TwHINConfig(**KG, epochs=2, validation={"source": "auto"}, holdout_fraction=0.1), graph,
                     tmp_path / "c", use_ray=False)
    assert info["summary"]["validation"] == {"source": "holdout", "metric": "filtered_mrr", "triples": 91,
                                             "every_epochs": 1}  # 10% of each relation
    from graphrec.run.config import parse_config

    with pytest.raises(GraphrecError, match="holdout_fraction > 0"):
        parse_config({"validation": {"source": "holdout"}})


def test_evaluation_period_counts_positives(kg_split, tmp_path):
    from graphrec.train.twhin import evaluation_period

    cfg = TwHINConfig(**KG, epochs=7, validation={"source": "split", "min_positives": 3000}, patience=100)
    assert evaluation_period(cfg, 720) == 5 and evaluation_period(cfg, 3000) == 1 and evaluation_period(cfg, 10**6) == 1
    every4 = cfg.model_copy(update={"validation": cfg.validation.model_copy(update={"every": 4})})
    assert evaluation_period(every4, 10**6) == 4
    info = fit(cfg.model_copy(update={"validation": cfg.validation.model_copy(update={"min_positives": 1000})}),
                     kg_split / "split" / "train", tmp_path / "run", use_ray=False)
    # ~720 train triples per epoch -> every 2 epochs, and after the last
    hist = info["summary"]["history"]
    assert [h["epoch"] for h in hist if "valid_mrr" in h] == [1, 3, 5, 6] and info["summary"]["validation"]["every_epochs"] == 2


def test_kg_config_negatives_rule():
    """configs/twhin-kg.yaml: every node of a type up to exhaustive_max_nodes (1-N), that
    many uniform nodes beyond it, so a positive never costs more candidates."""
    from graphrec.sampling import typed_negatives

    cfg = load_config(ROOT / "configs" / "twhin-kg.yaml")
    n = cfg.negatives
    assert n.uniform == n.exhaustive_max_nodes and not n.in_batch and cfg.validation.source == "auto"
    g = torch.Generator().manual_seed(0)
    assert torch.equal(typed_negatives(104, n.uniform, g, n.exhaustive_max_nodes), torch.arange(104))
    small = typed_negatives(n.exhaustive_max_nodes, n.uniform, g, n.exhaustive_max_nodes)
    assert torch.equal(small, torch.arange(n.exhaustive_max_nodes))
    big = typed_negatives(34628, n.uniform, g, n.exhaustive_max_nodes)
    assert big.shape == (n.uniform,) and int(big.max()) < 34628 and not torch.equal(big, torch.arange(n.uniform))


def test_auto_batch_size_follows_the_candidate_count():
    from graphrec.train.twhin import resolve_batch_size

    cfg = load_config(ROOT / "configs" / "twhin-kg.yaml")
    assert cfg.batch_size == "auto"
    et = [("entity", "r", "entity")]
    assert resolve_batch_size(cfg, {"entity": 104}, et) == 100  # Kinships: 1-N over 104 entities
    assert resolve_batch_size(cfg, {"entity": 2000}, et) == 500  # 1-N over 2,000: 2000 / 4
    assert resolve_batch_size(cfg, {"entity": 34628}, et) == 1000  # 4,096 uniform candidates
    # only the corrupted sides count: tail corruption of user -> item scores items
    two = {"user": 50000, "item": 800}
    tail = cfg.model_copy(update={"negatives": cfg.negatives.model_copy(update={"corrupt": "tail"})})
    assert resolve_batch_size(tail, two, [("user", "rated", "item")]) == 200
    assert resolve_batch_size(cfg.model_copy(update={"batch_size": 64}), two, [("user", "rated", "item")]) == 64


def test_auto_dim_bounds_the_scoring_cost_per_positive(kg_split, tmp_path):
    from graphrec.train.twhin import resolve_dim

    cfg = load_config(ROOT / "configs" / "twhin-kg.yaml")
    assert cfg.dim == "auto"
    et = [("entity", "r", "entity")]
    assert resolve_dim(cfg, {"entity": 104}, et) == 1000
    assert resolve_dim(cfg, {"entity": 2000}, et) == 500
    assert resolve_dim(cfg, {"entity": 34628}, et) == 244  # 4,096 candidates: 10^6 / 4096 = 244.1
    assert resolve_dim(cfg.model_copy(update={"dim": 32}), {"entity": 34628}, et) == 32
    # a run saves the resolved values, so it reloads without the graph's sizes
    run_cfg = cfg.model_copy(update={"epochs": 1, "validation": cfg.validation.model_copy(update={"source": "split"})})
    info = fit(run_cfg, kg_split / "split" / "train", tmp_path / "run", use_ray=False)
    assert info["config"]["dim"] == 1000 and info["config"]["batch_size"] == 100 and info["summary"]["batch_size"] == 100
    model = open_run(tmp_path / "run").model
    assert model.node_emb.weight.shape == (60, 1000)


def test_types_batches_train_as_well_in_fewer_steps(kg_split, tmp_path):
    """``batches: types`` in the ordinary trainer: the graph's three relations (one node
    type) share batches — the same positives per epoch in fewer steps, each positive
    scored with its own relation, and a model as good on the split's test triples."""
    from graphrec.eval import load_split

    split = load_split(kg_split / "split")
    out = {}
    for mode in ("relation", "types"):
        cfg = TwHINConfig(**{**KG, "batch_size": 200}, epochs=12, batches=mode, validation={"source": "none"})
        info = fit(cfg, split.train.path, tmp_path / mode, use_ray=False)
        h = info["summary"]["history"]
        out[mode] = (h[0]["positives"], h[0]["steps"], link_prediction_on_split(open_run(tmp_path / mode).model,
                                                                                 split)["mrr"])
    assert out["types"][1] < out["relation"][1]
    assert out["types"][0] <= out["relation"][0]  # relation batches cycle each relation to whole batches
    assert out["types"][2] > 0.3 and abs(out["types"][2] - out["relation"][2]) < 0.1, out


def test_a_short_batch_weighs_its_share_of_a_full_one():
    """Every positive weighs the same however positives are cut into batches: a batch of
    b < batch_size positives (a group's last, a partitioned bucket's) is scaled by b / B."""
    torch.manual_seed(0)
    et = ("a", "r", "b")
    model = TwHIN({"a": 10, "b": 12}, [et], dim=8)
    cfg = TwHINConfig(dim=8, batch_size=8, negatives={"uniform": 5, "in_batch": True}, regularization=0.01)
    loss_module = TwHINLoss(model, cfg)
    heads, tails, negs = torch.arange(8), torch.arange(8) + 2, torch.tensor([0, 3, 5, 7, 11])

    def plain(n):
        return model.loss(et, heads[:n], tails[:n], neg_tails=negs, neg_heads=negs[:4], in_batch=True,
                          regularization=0.01)

    assert torch.equal(loss_module(0, heads, tails, negs, negs[:4]), plain(8))
    short = loss_module(0, heads[:3], tails[:3], negs, negs[:4])
    torch.testing.assert_close(short, plain(3) * 3 / 8)
    # "auto" not yet resolved: no batch size to compare with, the loss is left alone
    auto = TwHINLoss(model, cfg.model_copy(update={"batch_size": "auto"}))
    assert torch.equal(auto(0, heads[:3], tails[:3], negs, negs[:4]), plain(3))
