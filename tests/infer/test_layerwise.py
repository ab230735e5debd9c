import json

import numpy as np
import pytest
import torch

from graphrec.errors import GraphrecError
from graphrec.infer.layerwise import LayerwiseInference, ShardTask, infer_pinsage, minibatch_inference
from graphrec.models import PinSage
from graphrec.sampling import FeatureSpec, NodeFeatures
from graphrec.sampling.walks import ImportanceNeighborhoods


class _Features:
    """A NodeFeatureTable stand-in: one categorical and one numeric feature."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.cat = torch.randint(0, 5, (n, 1), generator=g)
        self.num = torch.randn(n, 2, generator=g)

    def gather(self, nodes):
        nodes = torch.as_tensor(np.asarray(nodes, dtype=np.int64))
        return NodeFeatures(self.cat[nodes], [], self.num[nodes])


def _setup(n=300, t=7, layers=2, seed=0):
    torch.manual_seed(seed)
    spec = FeatureSpec(categorical={"c": 5}, multi_categorical={}, numeric=["x"])
    model = PinSage(n, spec, dim=8, hidden_dim=16, num_layers=layers, id_dim=4, feature_dim=3, learned_norm=True).eval()
    rng = np.random.default_rng(seed)
    nbr = np.stack([rng.choice(n, t, replace=False) for _ in range(n)]).astype(np.int64)
    nbr[rng.random((n, t)) < 0.2] = -1  # padding
    nbr[3] = -1  # a node without neighbours
    w = rng.random((n, t)).astype(np.float32) * (nbr >= 0)
    w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
    return model, _Features(n), ImportanceNeighborhoods(nbr, w)


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_layerwise_equals_naive_minibatch_inference(tmp_path, layers):
    model, feats, nbh = _setup(layers=layers)
    out = LayerwiseInference(model, feats, nbh, tmp_path / "inf", shard_size=64).run(progress=False)
    naive = minibatch_inference(model, feats, nbh, batch_size=50)
    assert out.shape == (300, 8)
    np.testing.assert_allclose(np.asarray(out), naive, atol=1e-5, rtol=0)
    # and the in-memory layer-wise pass of the model agrees
    np.testing.assert_allclose(np.asarray(out), model.inference(feats.gather, nbh.neighbors, nbh.weights).numpy(),
                               atol=1e-5, rtol=0)


def test_killed_inference_resumes_without_recomputing_finished_shards(tmp_path, monkeypatch):
    model, feats, nbh = _setup()
    work = tmp_path / "inf"
    job = LayerwiseInference(model, feats, nbh, work, shard_size=50)  # 6 shards x 3 phases
    orig_run = ShardTask.run
    budget = iter(range(8))

    def crash_after_8(self, *args):  # all of phase 0, two shards of phase 1, then a "crash"
        if next(budget, None) is None:
            raise InterruptedError("killed")
        return orig_run(self, *args)

    with monkeypatch.context() as m, pytest.raises(InterruptedError):
        m.setattr(ShardTask, "run", crash_after_8)
        job.run(progress=False)
    done = sorted(p.name for p in (work / "done").iterdir())
    assert len(done) == 8 and done[-1] == "1-000001"
    stamps = {p.name: p.stat().st_mtime_ns for p in (work / "done").iterdir()}
    calls = []
    orig = type(job).__mro__[0]._run_local

    def counting(task, phase, shard, bar):
        calls.append((phase, shard[0]))
        return orig(task, phase, shard, bar)

    again = LayerwiseInference(model, feats, nbh, work, shard_size=50)
    again._run_local = counting
    out = again.run(progress=False)
    assert calls == [(1, s) for s in range(2, 6)] + [(2, s) for s in range(6)]
    assert all((work / "done" / k).stat().st_mtime_ns == v for k, v in stamps.items())  # untouched
    np.testing.assert_allclose(np.asarray(out), minibatch_inference(model, feats, nbh), atol=1e-5, rtol=0)
    assert again.complete
    calls.clear()
    again.run(progress=False)  # nothing left to do
    assert calls == []


def test_resume_refuses_another_model(tmp_path):
    model, feats, nbh = _setup()
    LayerwiseInference(model, feats, nbh, tmp_path / "inf", shard_size=100)
    other, _, _ = _setup(seed=1)
    with pytest.raises(GraphrecError, match="fingerprint"):
        LayerwiseInference(other, feats, nbh, tmp_path / "inf", shard_size=100)
    with pytest.raises(GraphrecError, match="shard_size"):
        LayerwiseInference(model, feats, nbh, tmp_path / "inf", shard_size=64)
    state = json.loads((tmp_path / "inf" / "inference.json").read_text())
    assert state["num_nodes"] == 300 and state["num_layers"] == 2


@pytest.mark.slow
def test_layerwise_on_local_ray_matches_in_process(tmp_path):
    model, feats, nbh = _setup()
    local = np.asarray(LayerwiseInference(model, feats, nbh, tmp_path / "a", shard_size=64).run(progress=False))
    ray_out = LayerwiseInference(model, feats, nbh, tmp_path / "b", shard_size=64).run(use_ray=True, progress=False)
    np.testing.assert_array_equal(np.asarray(ray_out), local)


CHILD = """
import sys, time
import numpy as np
sys.path.insert(0, {root!r})
from tests.infer.test_layerwise import _setup
from graphrec.infer.layerwise import LayerwiseInference, ShardTask

run = ShardTask.run
def slow(self, *a):
    time.sleep(0.2)  # slow enough to be killed mid-way
    return run(self, *a)
ShardTask.run = slow
model, feats, nbh = _setup()
LayerwiseInference(model, feats, nbh, {work!r}, shard_size=20).run(progress=False)
"""


def test_sigkilled_inference_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    work = tmp_path / "inf"
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), work=str(work))])
    def finished():
        return len(list((work / "done").glob("[0-9]*"))) if (work / "done").exists() else 0

    deadline = time.time() + 120
    while time.time() < deadline and finished() < 5 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in (work / "done").iterdir() if not p.name.startswith(".")}
    assert 5 <= len(done) < 45  # 15 shards x 3 phases: killed mid-way
    model, feats, nbh = _setup()
    job = LayerwiseInference(model, feats, nbh, work, shard_size=20)
    out = job.run(progress=False)
    assert {k: (work / "done" / k).stat().st_mtime_ns for k in done} == done  # finished shards not redone
    np.testing.assert_allclose(np.asarray(out), minibatch_inference(model, feats, nbh), atol=1e-5, rtol=0)
