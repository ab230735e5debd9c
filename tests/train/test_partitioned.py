"""Partitioned (out-of-core) TwHIN training in one process (train/partitioned.py)."""

import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.eval import load_split, random_split
from graphrec.run.config import TwHINConfig
from graphrec.run.directory import open_run
from graphrec.train.evaluate import link_prediction_on_split
from graphrec.run.tables import PartitionTables
from graphrec.train.engine import FAULT_ENV
from graphrec.train.runs import fit

CFG = dict(dim=32, epochs=8, batch_size=256, lr=0.2, relations={"*:*:*": 0, "user:saves:pin": 1})


@pytest.fixture(scope="module")
def split(small_pins_graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("part") / "split"
    random_split(small_pins_graph, fractions=(0.9, 0.05, 0.05), out=out)
    return load_split(out)


def test_two_partitions_match_one_in_quality_and_hold_at_most_two_per_type(split, tmp_path, monkeypatch):
    fit(TwHINConfig(**CFG), split.train.path, tmp_path / "p1", use_ray=False)
    held = []
    orig = PartitionTables.load

    def spy(self, t, p):
        held.append((t, p))
        return orig(self, t, p)

    monkeypatch.setattr(PartitionTables, "load", spy)
    info = fit(TwHINConfig(**CFG, partitions=2), split.train.path, tmp_path / "p2", use_ray=False)
    assert info["partitions"] == 2 and info["summary"]["history"][-1]["buckets"] == 4
    losses = [h["loss"] for h in info["summary"]["history"]]
    assert losses[-1] < losses[0]
    # a bucket loads the partitions it trains: two of each partitioned type at most, never more
    per_bucket = [held[k : k + 2] for k in range(0, len(held), 2)]
    assert all(len({p for t, p in b if t == "user"}) <= 2 for b in per_bucket)
    mrr1 = link_prediction_on_split(open_run(tmp_path / "p1").model, split)["mrr"]
    mrr2 = link_prediction_on_split(open_run(tmp_path / "p2").model, split)["mrr"]
    assert mrr2 > 0.03 * 3  # far above random (~0.01 over 600 pins)
    assert abs(mrr2 - mrr1) < 0.03, (mrr1, mrr2)


def test_partitioned_run_exports_like_any_run_and_is_deterministic(split, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 16\nepochs: 2\nbatch_size: 256\n")
    for name in ("a", "b"):
        assert main(["-q", "train", "twhin", "--config", str(cfg), "--graph", str(split.train.path), "--out",
                     str(tmp_path / name), "--no-ray", "--partitions", "2"]) == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["partitions"] == 2
    a, b = open_run(tmp_path / "a").model, open_run(tmp_path / "b").model
    assert torch.equal(a.node_emb.weight, b.node_emb.weight)
    assert np.isfinite(a.node_emb.weight.detach().numpy()).all()
    assert main(["-q", "export", "--run", str(tmp_path / "a"), "--out", str(tmp_path / "emb"), "--retrieval",
                 "user:saves:pin"]) == 0
    assert (tmp_path / "emb" / "nodes" / "pin.parquet").is_file()


def test_what_partitioned_training_does_not_do_is_refused(split, tmp_path):
    with pytest.raises(GraphrecError, match="drop --no-ray"):
        fit(TwHINConfig(**CFG, partitions=2, ray={"workers": 2}), split.train.path, tmp_path / "r", use_ray=False)
    with pytest.raises(GraphrecError, match="adagrad"):
        fit(TwHINConfig(**CFG, partitions=2, optimizer="sparse_adam"), split.train.path, tmp_path / "r",
            use_ray=False)
    with pytest.raises(GraphrecError, match="valid triples only"):
        fit(TwHINConfig(**CFG, partitions=2, validation={"source": "holdout"}, holdout_fraction=0.1),
            split.train.path, tmp_path / "r", use_ray=False)
    assert not (tmp_path / "r").exists()


def test_two_ray_workers_train_disjoint_buckets_concurrently_and_survive_a_killed_worker(split, tmp_path, monkeypatch):
    """P=4 on two Ray workers: the lock server lets them train buckets with disjoint
    partitions at the same time; worker 1 is killed after writing (not committing) its
    second bucket of epoch 1: the bucket goes back to the pool, is trained once more and
    committed, the epoch completes, and the result is as good as one process's (P=4 in
    one process, and close to P=1: the partition-restricted negatives cost a little on a
    graph with 100 users per partition)."""
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, json.dumps({"epoch": 1, "rank": 1, "step": 1, "marker": str(marker)}))
    base = {**CFG, "epochs": 4, "negatives": {"in_batch": False}}
    cfg = TwHINConfig(**base, partitions=4, ray={"workers": 2, "max_failures": 1})
    info = fit(cfg, split.train.path, tmp_path / "ray", use_ray=True)
    assert marker.exists()  # the fault fired
    s = info["summary"]
    assert s["world_size"] == 2 and info["partitions"] == 4 and len(s["history"]) == 4
    rows = [json.loads(line) for line in (tmp_path / "ray" / "buckets.jsonl").read_text().splitlines()]
    for epoch in range(4):  # every bucket committed exactly once per epoch, the killed one included
        got = sorted(tuple(r["bucket"]) for r in rows if r["epoch"] == epoch)
        assert got == [(i, j) for i in range(4) for j in range(4)], epoch
    assert {r["worker"] for r in rows} == {0, 1}
    overlaps = [(a, b) for a in rows for b in rows if a["worker"] == 0 and b["worker"] == 1
                and a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlaps, "the two workers never trained at the same time"
    assert all(not ({*a["bucket"]} & {*b["bucket"]}) for a, b in overlaps)  # never the same partition
    run = open_run(tmp_path / "ray", verify=True)
    fit(TwHINConfig(**base), split.train.path, tmp_path / "p1", use_ray=False)
    fit(TwHINConfig(**base, partitions=4), split.train.path, tmp_path / "p4", use_ray=False)
    mrr1, mrr4, mrr_ray = (link_prediction_on_split(open_run(tmp_path / n).model, split)["mrr"]
                           for n in ("p1", "p4", "ray"))
    assert abs(mrr_ray - mrr4) < 0.03 and mrr_ray > 0.85 * mrr1, (mrr1, mrr4, mrr_ray)


def test_partitioned_early_stopping_keeps_the_best_epoch(split, tmp_path):
    cfg = TwHINConfig(**{**CFG, "epochs": 30, "lr": 0.5}, partitions=2, patience=2,
                      validation={"source": "split", "max_triples": 500})
    info = fit(cfg, split.train.path, tmp_path / "es", use_ray=False)
    s = info["summary"]
    assert s["monitor"] == "valid_mrr" and s["best_epoch"] is not None
    mrrs = [h["valid_mrr"] for h in s["history"]]
    assert s["best_valid_mrr"] == max(mrrs) and s["history"][s["best_epoch"]]["valid_mrr"] == max(mrrs)
    if s["stopped_early"]:
        assert len(mrrs) - 1 - s["best_epoch"] == 2
    # the saved model is the best epoch's: its validation MRR is the best one
    from graphrec.train.partitioned import assemble  # noqa: F401 - the same evaluator as training
    from graphrec.train.twhin import build_validation

    run = open_run(tmp_path / "es")
    val = build_validation(run.config, run.store, [tuple(e) for e in run.model.edge_types], "split", split, None)
    assert val.mrr(run.model) == pytest.approx(s["best_valid_mrr"], abs=1e-6)


@pytest.mark.slow
def test_killed_partitioned_job_resumes_after_the_last_committed_bucket(split, tmp_path):
    """SIGKILL right after the 6th bucket commit (epoch 1, bucket 2 of 4); --resume
    continues from there and gives bitwise the model of an uninterrupted run."""
    from tests.reliability.test_kill import kill_at

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 16\nepochs: 3\nbatch_size: 256\npartitions: 2\nthreads: 1\n")  # same threads in every process: same sums
    argv = ["train", "twhin", "--config", str(cfg), "--graph", str(split.train.path), "--out", str(tmp_path / "run"),
            "--no-ray"]
    # commit 1 is the initial tables; 1 + 4 buckets of epoch 0 + 2 of epoch 1 = the 7th
    kill_at(tmp_path, argv, module="graphrec.run.storage", owner="PartitionCheckpoints", attr="commit", n=7,
            after_call=True)
    assert not (tmp_path / "run" / "run.json").exists()
    assert main(["-q", *argv]) == 2  # an unfinished run's state is never silently discarded
    assert main(["-q", *argv, "--resume"]) == 0
    whole = [a if a != str(tmp_path / "run") else str(tmp_path / "whole") for a in argv]
    assert main(["-q", *whole]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["summary"]["starts"] == [0, 1] and [h["epoch"] for h in info["summary"]["history"]] == [0, 1, 2]
    a, b = open_run(tmp_path / "run").model, open_run(tmp_path / "whole").model
    assert torch.equal(a.node_emb.weight, b.node_emb.weight) and torch.equal(a.rel_emb.weight, b.rel_emb.weight)


def test_graphrec_evaluate_scores_a_partitioned_run_from_its_tables(split, tmp_path, capsys):
    """`graphrec evaluate` opens a partitioned run (model.pt: relation vectors only) and
    assembles its tables on demand: the metrics are those of the assembled model."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 16\nepochs: 2\nbatch_size: 256\npartitions: 2\n")
    assert main(["-q", "train", "twhin", "--config", str(cfg), "--graph", str(split.train.path), "--out",
                 str(tmp_path / "run"), "--no-ray"]) == 0
    assert set(torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]) == {"rel_emb.weight"}
    capsys.readouterr()
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--split", str(split.path), "--json"]) == 0
    lp = json.loads(capsys.readouterr().out)["models"]["twhin"]["link_prediction"]
    assert lp["mrr"] == pytest.approx(link_prediction_on_split(open_run(tmp_path / "run").model, split)["mrr"])


def test_reverse_views_train_on_their_base_buckets(split, tmp_path):
    """``include_reverse``: a reverse view's buckets are its base's, transposed."""
    cfg = TwHINConfig(**{**CFG, "epochs": 2, "relations": {"*:*:*": 0, "pin:saved_by:user": 1}},
                      include_reverse=True, partitions=2)
    info = fit(cfg, split.train.path, tmp_path / "rev", use_ray=False)
    h = info["summary"]["history"]
    assert info["edge_types"] == [["pin", "saved_by", "user"]]
    assert int(round(h[0]["positives_per_s"] * h[0]["seconds"])) == pytest.approx(
        split.train.relation(("user", "saves", "pin")).num_edges, rel=0.01)
    assert h[-1]["loss"] < h[0]["loss"]
