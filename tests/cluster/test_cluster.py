"""A real two-node Ray cluster on loopback, started the way the README's "Running on a
cluster" says: ``ray start --head`` plus ``ray start --address``, token authentication
(``RAY_AUTH_MODE=token``, one token file every node and client reads through
``RAY_AUTH_TOKEN_PATH``), then

- TwHIN training submitted with ``ray job submit ... python jobs/train_twhin.py``;
- PinSage layer-wise inference submitted with ``ray job submit ... jobs/infer_pinsage.py``
  and run from a client process joining with ``--address`` (``graphrec infer``'s path).

Nodes get ``--node-ip-address 127.0.0.1`` (Ray 2.60 replaces a loopback address by the
host's own). Each node declares ONE logical CPU, and the two Ray Train workers need one each, so a
successful run has a worker on each node (gloo all-reduce between the nodes). Both nodes
run under a private ``--temp-dir`` and distinct ports; teardown kills exactly the
processes of that temp dir (never ``ray stop``, which would stop every Ray on the machine).
Needs ``ray[default]`` (the ``cluster`` extra, part of ``dev``) for the dashboard's job API.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import ROOT, free_port_range

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
OBJECT_STORE = 80 * 1024 * 1024
WORKER_PORTS = 40  # per node: drivers, Train controller/workers, inference tasks


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Cluster:
    gcs: str  # 127.0.0.1:PORT, for ray.init / --address
    dashboard: str  # http://127.0.0.1:PORT, for ray job submit
    env: dict
    temp_dir: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def submit(self, job_id: str, *entrypoint: str) -> str:
        """``ray job submit`` (waits for the end, prints the job's output); returns the
        output after asserting the job SUCCEEDED."""
        p = self.run(RAY, "job", "submit", "--address", self.dashboard, "--working-dir", ROOT,
                     "--runtime-env-json", json.dumps({"excludes": [".git", ".venv", "out"]}),
                     "--submission-id", job_id, "--", "python", *entrypoint)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out[-4000:]
        status = self.run(RAY, "job", "status", "--address", self.dashboard, job_id, timeout=60)
        assert f"Job '{job_id}' succeeded" in status.stdout, status.stdout + status.stderr + out[-4000:]
        return out


def _ours(temp_dir: Path) -> list[psutil.Process]:
    """Every process started for this cluster: those naming its temp dir, and their children."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(temp_dir) in arg for arg in proc.info["cmdline"] or ()):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return list(found.values())


def _kill(temp_dir: Path) -> None:
    procs = _ours(temp_dir)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=3)  # then SIGKILL: the test's processes hold nothing to save
    for p in alive + _ours(temp_dir):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def cluster():
    if shutil.which(str(RAY)) is None:
        pytest.skip(f"{RAY} not found")
    pytest.importorskip("aiohttp_cors", reason="the cluster test needs ray[default] (pip install -e '.[cluster]')")
    temp_dir = Path(tempfile.mkdtemp(prefix="grc-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GRAPHREC_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{RAY.parent}{os.pathsep}{env.get('PATH', '')}")
    gcs, dash, client, *node_ports = _free_ports(3 + 2 * 6)
    taken = {gcs, dash, client, *node_ports}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(OBJECT_STORE),
              "--disable-usage-stats"]

    def node_args(i: int) -> list[str]:
        """Node ``i``'s own temp dir (its own logs: two log monitors on one session dir
        would forward every worker line twice) and ports."""
        nm, om, agent, agent_grpc, metrics, renv = node_ports[6 * i:6 * i + 6]
        lo = free_port_range(WORKER_PORTS, taken)
        return ["--temp-dir", str(temp_dir / f"n{i}"), "--node-manager-port", str(nm), "--object-manager-port", str(om), "--min-worker-port", str(lo),
                "--max-worker-port", str(lo + WORKER_PORTS - 1), "--dashboard-agent-listen-port", str(agent),
                "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
                "--runtime-env-agent-port", str(renv)]

    c = Cluster(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", env, temp_dir)
    try:
        head = c.run(RAY, "start", "--head", "--port", gcs, "--include-dashboard", "true", "--dashboard-host",
                     "127.0.0.1", "--dashboard-port", dash, "--ray-client-server-port", client, *common,
                     *node_args(0), timeout=120)
        assert head.returncode == 0, head.stdout + head.stderr
        worker = c.run(RAY, "start", "--address", c.gcs, *common, *node_args(1), timeout=120)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        yield c
    finally:
        _kill(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


CLIENT = """
import json, sys
import ray
from graphrec.ray_env import init_ray
from graphrec.infer.layerwise import infer_pinsage

address, run, out = sys.argv[1:]
init_ray(address)
alive = [n for n in ray.nodes() if n["Alive"]]
print(json.dumps({"nodes": len(alive), "cpus": ray.cluster_resources().get("CPU")}))
infer_pinsage(run, out, shard_size=128, use_ray=True, address=address, progress=False)
"""


def test_training_and_inference_jobs_on_two_nodes(cluster, small_pins_graph, tmp_path):
    # (a) TwHIN on 2 Ray Train workers, one per node, through `ray job submit`
    cfg = tmp_path / "twhin.yaml"
    cfg.write_text("model: twhin\ndim: 16\nepochs: 4\nbatch_size: 256\nlr: 0.1\n")
    run = tmp_path / "twhin"
    out = cluster.submit("graphrec-train-twhin", "jobs/train_twhin.py", "--config", str(cfg), "--graph",
                         str(small_pins_graph.path), "--out", str(run), "--workers", "2", "--epochs", "2")
    info = json.loads((run / "run.json").read_text())
    s = info["summary"]
    assert info["model"] == "twhin" and s["epochs_run"] == 2 and s["world_size"] == 2
    assert [h["epoch"] for h in s["history"]] == [0, 1] and all(h["workers"] == 2 for h in s["history"])
    assert (run / "model.pt").is_file()
    assert '"epochs_run": 2' in out  # the job's own output (job_main's summary) reaches the submitter
    assert "Failed to query Ray Train Controller" not in out  # framework noise filtered in the job driver too

    # (b) PinSage layer-wise inference: a finished run (trained here, no Ray), then its
    # shards as Ray tasks on the cluster, submitted as a job and from a joining client
    from graphrec.infer.layerwise import infer_pinsage
    from graphrec.run.config import PinSageConfig
    from graphrec.train.runs import fit
    from tests.train.test_pinsage_train import FAST

    pin_run = tmp_path / "pinsage"
    fit(PinSageConfig(**{**FAST, "epochs": 1}), small_pins_graph.path, pin_run, use_ray=False)
    reference = infer_pinsage(pin_run, tmp_path / "inf-local", shard_size=128, progress=False)

    cluster.submit("graphrec-infer-pinsage", "jobs/infer_pinsage.py", "--run", str(pin_run), "--out",
                   str(tmp_path / "inf-job"), "--shard-size", "128")
    client = cluster.run(sys.executable, "-c", CLIENT, cluster.gcs, pin_run, tmp_path / "inf-client")
    assert client.returncode == 0, client.stdout + client.stderr
    assert json.loads(client.stdout.strip().splitlines()[0]) == {"nodes": 2, "cpus": 2.0}

    expected = {name: np.load(reference / name) for name in ("embeddings.npy", "user_embeddings.npy")}
    assert expected["embeddings.npy"].shape == (600, 16) and expected["user_embeddings.npy"].shape == (400, 16)
    for work in ("inf-job", "inf-client"):
        done = sorted(p.name for p in (tmp_path / work / "done").glob("[0-9]*"))
        assert done == sorted(p.name for p in (reference / "done").glob("[0-9]*"))  # every shard of every phase
        for name, ref in expected.items():
            np.testing.assert_allclose(np.load(tmp_path / work / name), ref, atol=1e-6, rtol=0)


def test_partitioned_training_on_two_nodes(cluster, small_pins_graph, tmp_path):
    """Partitioned TwHIN (P=4) submitted with ``ray job submit``: one bucket trainer per
    node (each node has one CPU), the lock server as an actor. From the bucket log: both
    nodes trained, at the same time, buckets sharing no partition; every bucket of every
    epoch committed once. Quality equals a single-node run of the same config."""
    from graphrec.eval import load_split, random_split
    from graphrec.run.config import TwHINConfig
    from graphrec.run.directory import open_run
    from graphrec.train.evaluate import link_prediction_on_split
    from graphrec.train.runs import fit

    split = random_split(small_pins_graph, fractions=(0.9, 0.05, 0.05), out=tmp_path / "split")
    split = load_split(tmp_path / "split")
    body = ("model: twhin\ndim: 32\nepochs: 4\nbatch_size: 256\nlr: 0.2\nnegatives: {in_batch: false}\n"
            "relations: {'*:*:*': 0, 'user:saves:pin': 1}\nthreads: 1\n")
    cfg = tmp_path / "twhin-p4.yaml"
    cfg.write_text(body)
    run = tmp_path / "twhin-p4"
    out = cluster.submit("graphrec-train-twhin-partitioned", "jobs/train_twhin.py", "--config", str(cfg), "--graph",
                         str(split.train.path), "--out", str(run), "--workers", "2", "--partitions", "4")
    info = json.loads((run / "run.json").read_text())
    assert info["partitions"] == 4 and info["summary"]["world_size"] == 2, out[-2000:]
    rows = [json.loads(line) for line in (run / "buckets.jsonl").read_text().splitlines()]
    assert len({r["node"] for r in rows}) == 2  # a trainer on each node
    for epoch in range(4):
        assert sorted(tuple(r["bucket"]) for r in rows if r["epoch"] == epoch) == [(i, j) for i in range(4)
                                                                                      for j in range(4)]
    overlaps = [(a, b) for a in rows for b in rows if a["node"] < b["node"] and a["start"] < b["end"]
                and b["start"] < a["end"]]
    assert overlaps and all(not ({*a["bucket"]} & {*b["bucket"]}) for a, b in overlaps)
    fit(TwHINConfig(**{k: v for k, v in __import__("yaml").safe_load(body).items()}, partitions=4),
        split.train.path, tmp_path / "single", use_ray=False)
    mrr_cluster = link_prediction_on_split(open_run(run).model, split)["mrr"]
    mrr_single = link_prediction_on_split(open_run(tmp_path / "single").model, split)["mrr"]
    assert abs(mrr_cluster - mrr_single) < 0.03, (mrr_cluster, mrr_single)
