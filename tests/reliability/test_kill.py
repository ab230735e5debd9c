"""Fault injection: each command is SIGKILLed at its most delicate moment (the output is
complete in its temporary sibling, a training checkpoint was just written, half of the
inference shards are done), then rerun. Nothing partial is ever visible at the output
path, the rerun completes, and finished work that is promised to be resumable
(training epochs, inference shards) is not redone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphrec.cli import main
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# The child runs the real CLI with one function wrapped: after its N-th call it touches
# READY and sleeps, so the parent kills it at a known point.
CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
import importlib
module = importlib.import_module({module!r})
owner = getattr(module, {owner!r}) if {owner!r} else module
orig = getattr(owner, {attr!r})
calls = [0]

def wrapped(*args, **kwargs):
    if {after_call!r}:
        out = orig(*args, **kwargs)
    calls[0] += 1
    if calls[0] >= {n}:
        Path({ready!r}).write_text("ready")
        time.sleep(600)
    return out if {after_call!r} else orig(*args, **kwargs)

setattr(owner, {attr!r}, wrapped)
from graphrec.cli import main
sys.exit(main({argv!r}))
"""


def kill_at(tmp_path: Path, argv: list[str], module: str, attr: str, owner: str = "", n: int = 1,
            after_call: bool = False) -> None:
    """Run ``graphrec ARGV`` in a child, SIGKILL it at the ``n``-th call of ``module.[owner.]attr``."""
    ready = tmp_path / f"ready-{time.monotonic_ns()}"
    code = CHILD.format(root=str(ROOT), module=module, owner=owner, attr=attr, n=n, after_call=after_call,
                        ready=str(ready), argv=["-q", *argv])
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if not ready.exists():
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the child never reached the kill point (exit {proc.returncode}): {err[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def visible(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill") / "data"
    assert main(["-q", "generate", "pinterest", "--users", "300", "--pins", "500", "--boards", "40", "--authors",
                 "30", "--seed", "1", "--out", str(d)]) == 0
    return d


SCHEMA = str(ROOT / "graphs" / "pinterest-synthetic.yaml")
SWAP = dict(module="graphrec.io", attr="swap_in")  # output complete in its temp dir, not yet renamed


def test_killed_build_split_export_index_leave_nothing_partial_and_rerun(data_dir, tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    steps = [
        ["build", "--schema", SCHEMA, "--data", str(data_dir), "--out", str(w / "graph")],
        ["split", str(w / "graph"), "--relation", "user:saves:pin", "--out", str(w / "split")],
    ]
    for argv in steps:
        out_name = Path(argv[argv.index("--out") + 1]).name
        before = visible(w)
        kill_at(tmp_path, argv, **SWAP)
        assert visible(w) == before, f"{argv[0]}: partial output visible after SIGKILL"
        assert main(["-q", *argv]) == 0, argv
        assert visible(w) == sorted([*before, out_name])
        assert not [p.name for p in w.iterdir() if p.name.startswith(f".{out_name}.")]  # temp dirs and lock gone

    cfg = tmp_path / "twhin.yaml"
    cfg.write_text("dim: 8\nepochs: 1\nbatch_size: 256\n")
    assert main(["-q", "train", "twhin", "--config", str(cfg), "--graph", str(w / "split" / "train"), "--out",
                 str(w / "run"), "--no-ray"]) == 0
    for argv, out_name in (
        (["export", "--run", str(w / "run"), "--out", str(w / "emb"), "--retrieval", "user:saves:pin"], "emb"),
        (["index", "--embeddings", str(w / "emb"), "--target", "pin", "--query", "user:saves:pin", "--out",
          str(w / "index")], "index"),
    ):
        before = visible(w)
        kill_at(tmp_path, argv, **SWAP)
        assert visible(w) == before, f"{argv[0]}: partial output visible after SIGKILL"
        assert main(["-q", *argv]) == 0
        assert out_name in visible(w)
        assert not [p.name for p in w.iterdir() if p.name.startswith(f".{out_name}.")]
    # the same kill while replacing an existing output (--overwrite): the old one stays whole
    old = sorted(p.name for p in (w / "index").iterdir())
    kill_at(tmp_path, ["index", "--embeddings", str(w / "emb"), "--target", "pin", "--query", "user:saves:pin",
                       "--out", str(w / "index"), "--overwrite", "--kind", "hnsw"], **SWAP)
    assert sorted(p.name for p in (w / "index").iterdir()) == old
    assert json.loads((w / "index" / "manifest.json").read_text())["kind"] != "hnsw"


def test_killed_training_resumes_without_redoing_finished_epochs(data_dir, tmp_path):
    graph = tmp_path / "graph"
    assert main(["-q", "build", "--schema", SCHEMA, "--data", str(data_dir), "--out", str(graph)]) == 0
    cfg = tmp_path / "twhin.yaml"
    cfg.write_text("dim: 8\nepochs: 4\nbatch_size: 256\n")
    argv = ["train", "twhin", "--config", str(cfg), "--graph", str(graph), "--out", str(tmp_path / "run"), "--no-ray"]
    # killed right after the checkpoint of epoch 1 (the second) was written
    kill_at(tmp_path, argv, module="graphrec.run.checkpoint", owner="CheckpointDir", attr="save", n=2,
            after_call=True)
    assert not (tmp_path / "run" / "run.json").exists()  # not a finished run
    assert main(["-q", *argv]) == 2  # checkpoints of an unfinished run are never silently discarded
    assert main(["-q", *argv, "--resume"]) == 0
    summary = json.loads((tmp_path / "run" / "run.json").read_text())["summary"]
    assert summary["starts"] == [0, 2] and [h["epoch"] for h in summary["history"]] == [0, 1, 2, 3]


def test_killed_inference_resumes_only_unfinished_shards(data_dir, tmp_path):
    graph = tmp_path / "graph"
    assert main(["-q", "build", "--schema", SCHEMA, "--data", str(data_dir), "--out", str(graph)]) == 0
    cfg = tmp_path / "pinsage.yaml"
    cfg.write_text("model: pinsage\nitem_type: pin\ninteractions: user:saves:pin\ndim: 8\nhidden_dim: 8\nepochs: 1\n"
                   "batch_size: 256\nloader_workers: 0\nwalks:\n  metapaths:\n    - path: [pin:saved_by:user, "
                   "user:saves:pin]\n  num_walks: 5\n  top_t: 5\n")
    run = tmp_path / "run"
    assert main(["-q", "train", "pinsage", "--config", str(cfg), "--graph", str(graph), "--out", str(run),
                 "--no-ray"]) == 0
    argv = ["infer", "--run", str(run), "--shard-size", "50", "--out", str(tmp_path / "inf")]
    kill_at(tmp_path, argv, module="graphrec.infer.layerwise", owner="ShardTask", attr="run", n=12, after_call=True)
    done = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "inf" / "done").iterdir()}
    assert len(done) == 12 and not (tmp_path / "inf" / "user_embeddings.npy").exists()
    assert main(["-q", *argv]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "inf" / "done").iterdir()}
    assert all(after[k] == v for k, v in done.items())  # finished shards were not recomputed
    assert len(after) == 10 * 3 and (tmp_path / "inf" / "user_embeddings.npy").is_file()
    assert main(["-q", "export", "--run", str(run), "--inference", str(tmp_path / "inf"), "--out",
                 str(tmp_path / "emb")]) == 0
