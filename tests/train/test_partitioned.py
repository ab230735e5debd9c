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
from graphrec.train.partitioned import PartitionTables
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


def test_what_partitioned_training_does_not_do_yet_is_refused(split, tmp_path):
    with pytest.raises(GraphrecError, match="--no-ray"):
        fit(TwHINConfig(**CFG, partitions=2), split.train.path, tmp_path / "r", use_ray=True)
    with pytest.raises(GraphrecError, match="adagrad"):
        fit(TwHINConfig(**CFG, partitions=2, optimizer="sparse_adam"), split.train.path, tmp_path / "r",
            use_ray=False)
    assert not (tmp_path / "r").exists()


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
