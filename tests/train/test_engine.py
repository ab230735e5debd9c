"""The shared training skeleton: exact mid-epoch resume, best state kept across resume,
corrupt checkpoints skipped, equal step counts on every rank."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from graphrec.run.checkpoint import CheckpointDir
from graphrec.run.config import TwHINConfig
from graphrec.run.directory import open_run
from graphrec.sampling import RelationBatchSchedule, RelationEdges
from graphrec.train.engine import FAULT_ENV
from graphrec.train.runs import fit
from tests.conftest import ROOT

FAST = dict(dim=16, epochs=3, batch_size=256, lr=0.1)


def _cli_train(cfg_path: Path, graph: Path, out: Path, *extra: str, env: dict | None = None):
    cmd = [sys.executable, "-m", "graphrec.cli", "-q", "train", "twhin", "--config", str(cfg_path), "--graph",
           str(graph), "--out", str(out), "--no-ray", *extra]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_killed_mid_epoch_resumes_at_the_step_and_matches_an_uninterrupted_run(small_pins_graph, tmp_path, capsys):
    from graphrec.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 16\nepochs: 3\nbatch_size: 256\nlr: 0.1\ncheckpoints: {every_steps: 10}\n")
    fault = {"epoch": 1, "step": 20, "rank": 0, "marker": str(tmp_path / "killed")}
    # one torch thread in the killed child and here, so that the runs' arithmetic is the same
    died = _cli_train(cfg, small_pins_graph.path, tmp_path / "run",
                      env={FAULT_ENV: json.dumps(fault), "OMP_NUM_THREADS": "1"})
    assert died.returncode != 0 and (tmp_path / "killed").exists()  # the process really died
    assert not (tmp_path / "run" / "run.json").exists()
    tags = CheckpointDir(tmp_path / "run" / "checkpoints").tags()
    assert tags[-1] == CheckpointDir.tag(1, 20)  # the last checkpoint is mid-epoch
    # the rest in this process (a subprocess per run cost ~15 s of start-up each)
    argv = ["-q", "train", "twhin", "--config", str(cfg), "--graph", str(small_pins_graph.path), "--no-ray"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*argv, "--out", str(tmp_path / "run")]) == 2
        assert "--resume" in capsys.readouterr().err
        assert main([*argv, "--out", str(tmp_path / "run"), "--resume"]) == 0
        assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    finally:
        torch.set_num_threads(threads)
    a, b = open_run(tmp_path / "run"), open_run(tmp_path / "whole")
    assert a.summary["starts"] == [0, 1]
    # the same batches, negatives and optimizer state: bitwise the same model and losses
    assert torch.equal(a.model.node_emb.weight, b.model.node_emb.weight)
    assert [h["loss"] for h in a.summary["history"]] == [h["loss"] for h in b.summary["history"]]
    assert [h["steps"] for h in a.summary["history"]] == [h["steps"] for h in b.summary["history"]]


def test_resume_keeps_the_best_state_and_saves_it(small_pins_graph, tmp_path):
    # lr so high that the sampled valid MRR peaks early; patience never stops it
    base = dict(FAST, lr=2.0, holdout_fraction=0.1, patience=100)
    fit(TwHINConfig(**{**base, "epochs": 2}), small_pins_graph.path, tmp_path / "run", use_ray=False)
    info = fit(TwHINConfig(**{**base, "epochs": 6}), small_pins_graph.path, tmp_path / "run", use_ray=False,
               resume=True)
    s = info["summary"]
    valid = [h["valid_sampled_mrr"] for h in s["history"]]
    assert s["starts"] == [0, 2] and len(valid) == 6
    assert s["best_valid_sampled_mrr"] == max(valid) and s["best_epoch"] == int(np.argmax(valid))
    # the saved model is the best-on-valid state, not the last epoch's
    ckpt = CheckpointDir(tmp_path / "run" / "checkpoints").latest()[1]
    saved = open_run(tmp_path / "run").model.state_dict()
    for k, v in ckpt["best_modules"]["model"].items():
        assert torch.equal(saved[k], v)
    if s["best_epoch"] != 5:
        assert not torch.equal(saved["node_emb.weight"], ckpt["modules"]["model"]["node_emb.weight"])


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(small_pins_graph, tmp_path, caplog):
    fit(TwHINConfig(**{**FAST, "epochs": 2}), small_pins_graph.path, tmp_path / "run", use_ray=False)
    ckpts = CheckpointDir(tmp_path / "run" / "checkpoints")
    assert ckpts.tags() == [CheckpointDir.tag(1, 0), CheckpointDir.tag(2, 0)]
    newest = tmp_path / "run" / "checkpoints" / CheckpointDir.tag(2, 0) / "state.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    newest.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        info = fit(TwHINConfig(**{**FAST, "epochs": 3}), small_pins_graph.path, tmp_path / "run", use_ray=False,
                   resume=True)
    assert "skipping corrupt checkpoint" in caplog.text and "sha256" in caplog.text
    assert info["summary"]["starts"] == [0, 1]  # resumed from the previous checkpoint (after epoch 0)
    assert [h["epoch"] for h in info["summary"]["history"]] == [0, 1, 2]


@pytest.mark.parametrize("world", [2, 4])
def test_every_rank_runs_the_same_steps_whatever_the_relation_sizes(world):
    rng = np.random.default_rng(0)
    rels = [RelationEdges(("a", "one", "b"), np.array([0]), np.array([1])),  # a single edge
            RelationEdges(("a", "two", "b"), np.array([0, 1]), np.array([1, 0])),
            RelationEdges(("a", "many", "b"), rng.integers(0, 50, 1001), rng.integers(0, 50, 1001)),
            RelationEdges(("a", "weighted", "b"), np.array([3, 4, 5]), np.array([1, 2, 3]), np.array([1.0, 0, 2]))]
    for holdout in (0.0, 0.5):
        schedules = [RelationBatchSchedule(rels, [1.0, 1.0, 1.0, 0.3], 64, seed=1, rank=r, world_size=world,
                                           holdout_fraction=holdout) for r in range(world)]
        runs = [[(rel, h.shape[0]) for rel, h, *_ in s.epoch(3)] for s in schedules]
        assert len({len(r) for r in runs}) == 1 and len(runs[0]) == schedules[0].steps_per_epoch
        assert len({tuple(rel for rel, _ in r) for r in runs}) == 1  # the same relation at every step
        assert all(n > 0 for r in runs for _, n in r)
        assert schedules[0].steps_per_relation[0] == 1  # the 1-edge relation trains on every rank
        for sch in schedules:  # a weight-0 edge is never drawn, whatever the rank's shard holds
            for rel, heads, *_ in sch.epoch(1):
                if rel == 3:
                    assert not (heads == 4).any()


WORKER = """
import json, sys, os
import torch.distributed as dist
sys.path.insert(0, {root!r})
rank, world = int(sys.argv[1]), int(sys.argv[2])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=rank, world_size=world)
from graphrec.train.twhin import train_loop_per_worker
s = train_loop_per_worker({{"twhin": json.loads({cfg!r}), "graph": {graph!r}, "out": {out!r}}})
print(json.dumps([h["steps"] for h in s["history"]]), flush=True)
dist.barrier()  # leave together: rank 0 writes the run after the others are done training
dist.destroy_process_group()
os._exit(0)  # skip interpreter teardown (gloo's threads can abort it: "terminate called ...")
"""


def _gloo_run(world: int, cfg: TwHINConfig, graph, out: Path) -> list:
    """Run ``train_loop_per_worker`` on ``world`` gloo ranks (processes); each rank's steps per epoch.

    A rank killed by a signal (the rare gloo crash, README "A worker that dies") is
    retried once from the same starting directory, with a warning."""
    import socket

    before = out.with_name(out.name + ".before")
    if out.exists():
        shutil.copytree(out, before)
    for attempt in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        code = WORKER.format(root=str(ROOT), port=port, cfg=json.dumps(cfg.model_dump(mode="json")),
                             graph=str(graph), out=str(out))
        procs = [subprocess.Popen([sys.executable, "-c", code, str(r), str(world)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for r in range(world)]
        results = []
        for p in procs:
            try:
                results.append(p.communicate(timeout=240))
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                pytest.fail("a rank hung (mismatched collectives)")
        signalled = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode < 0]
        if signalled and attempt == 1:
            warnings.warn(f"gloo rank(s) killed by a signal {signalled}; retrying the run once")
            shutil.rmtree(out, ignore_errors=True)
            if before.exists():
                shutil.copytree(before, out)
            continue
        break
    failed = [f"rank {r} (exit {p.returncode}), stdout: {o[-500:]!r}\n{err[-3000:]}"
              for r, (p, (o, err)) in enumerate(zip(procs, results)) if p.returncode != 0]
    assert not failed, "\n".join(failed)
    return [json.loads(o.strip().splitlines()[-1]) for o, _ in results]


def test_two_ranks_resumed_mid_epoch_match_an_uninterrupted_run(small_pins_graph, tmp_path):
    """Each rank resumes its own stream of negatives: 2 DDP ranks resumed from a
    mid-epoch checkpoint give bitwise the model of the uninterrupted run."""
    cfg = TwHINConfig(dim=8, epochs=2, batch_size=256, threads=1,
                      checkpoints={"every_steps": 5, "keep": 100})
    _gloo_run(2, cfg, small_pins_graph.path, tmp_path / "whole")
    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["model"]
    ckpts = CheckpointDir(tmp_path / "whole" / "checkpoints")
    mid = CheckpointDir.tag(1, 5)
    assert mid in ckpts.tags()
    shutil.copytree(tmp_path / "whole" / "checkpoints" / mid, tmp_path / "resumed" / "checkpoints" / mid)
    _gloo_run(2, cfg, small_pins_graph.path, tmp_path / "resumed")
    resumed = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["model"]
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["summary"]["starts"] == [0, 1]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_resume_with_another_config_or_graph_is_refused(small_pins_graph, tmp_path):
    from graphrec.errors import GraphrecError

    fit(TwHINConfig(**{**FAST, "epochs": 1}), small_pins_graph.path, tmp_path / "run", use_ray=False)
    with pytest.raises(GraphrecError, match=r"differs from the checkpoints' in \['dim'\]"):
        fit(TwHINConfig(**{**FAST, "dim": 32}), small_pins_graph.path, tmp_path / "run", use_ray=False, resume=True)
    # what may change: how long and where it runs
    info = fit(TwHINConfig(**{**FAST, "epochs": 2, "threads": 1}), small_pins_graph.path, tmp_path / "run",
               use_ray=False, resume=True)
    assert info["summary"]["starts"] == [0, 1]


def test_four_gloo_workers_with_one_edge_relations_finish(tmp_path):
    """Four DDP ranks on a graph whose relations have 1 and 2 edges: every all-reduce
    matches (the run finishes, no hang) and every rank took the same steps."""
    from graphrec.graph import build_graph, triples_schema

    lines = ["h0\tbig\tt0"] + [f"h{i}\tbig\tt{(i * 7) % 40}" for i in range(1, 300)] + ["h1\tsolo\tt2", "h3\tpair\tt4",
                                                                                         "h5\tpair\tt6"]
    (tmp_path / "kg.tsv").write_text("\n".join(lines) + "\n")
    store = build_graph(triples_schema(tmp_path / "kg.tsv"), tmp_path / "g", progress=False)
    outs = _gloo_run(4, TwHINConfig(dim=8, epochs=2, batch_size=64, threads=1), store.path, tmp_path / "run")
    assert all(o == outs[0] for o in outs) and all(n > 0 for n in outs[0])
    assert (tmp_path / "run" / "run.json").is_file()
