"""Out-of-core partitioned TwHIN on one box (issue 14): generate → build → train (P
partitions on W Ray workers) → export → index, each step a subprocess whose process tree
is sampled for the peak RSS of **every** process (driver, Ray workers, the coordinator
actor, Ray's own daemons), plus the planted-cluster recovery of the trained pins.

    python benchmarks/out_of_core.py --work /tmp/ooc --users 5000000 --pins 19000000 \\
        --boards 800000 --authors 300000 --saves 40000000 --partitions 8 --workers 2 \\
        --config /path/twhin.yaml [--steps generate build partition train export index nmi]

Each step prints one JSON line: wall seconds, the peak RSS of each process (MB, by pid
and a short name) and the step's own figures; ``--json`` collects them. Steps already
done in ``--work`` are skipped unless named in ``--steps``.

NMI: k-means (k = the planted cluster count) on the trained vectors of a seeded sample
of pins vs their planted cluster (``pins.parquet`` ``cluster``), against the same for
random vectors of the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from partitioned import TreeMemory  # noqa: E402 - the one process-tree memory sampler
GRAPHREC = [sys.executable, "-m", "graphrec.cli"]


def run_step(name: str, argv: list[str], log: Path) -> dict:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        with TreeMemory(proc.pid, 0.5) as mem:
            rc = proc.wait()
    rows = [{"pid": pid, "process": cmd, "peak_rss_mb": round(rss / 2**20)}
            for pid, (cmd, rss) in mem.per_process.items() if rss >= 50 * 2**20]
    out = {"step": name, "rc": rc, "wall_s": round(time.perf_counter() - t0, 1),
           "processes": sorted(rows, key=lambda r: -r["peak_rss_mb"])}
    if rc != 0:
        out["log_tail"] = log.read_text()[-3000:]
    return out


def nmi(work: Path, sample: int, seed: int = 0) -> dict:
    import pyarrow.parquet as pq
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import normalized_mutual_info_score

    from graphrec.infer.export import read_vectors

    pins = pq.read_table(work / "data" / "pins.parquet", columns=["pin_id", "cluster"])
    pin_ids, clusters = pins.column("pin_id").to_numpy(), pins.column("cluster").to_numpy()
    k = int(clusters.max()) + 1
    f = pq.ParquetFile(work / "emb" / "nodes" / "pin.parquet")
    rng = np.random.default_rng(seed)
    keep = sample / f.metadata.num_rows
    ids, vecs = [], []
    for b in f.iter_batches(batch_size=1 << 18):  # a seeded row sample, streaming
        m = rng.random(b.num_rows) < keep
        if m.any():
            emb = b.column("embedding").flatten().to_numpy().reshape(b.num_rows, -1)
            ids.append(b.column("id").to_numpy()[m])
            vecs.append(emb[m])
    ids, vecs = np.concatenate(ids), np.concatenate(vecs)
    order = np.argsort(pin_ids)
    truth = clusters[order[np.searchsorted(pin_ids, ids, sorter=order)]]
    x = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    got = MiniBatchKMeans(k, random_state=seed, n_init=3).fit_predict(x)
    rand = rng.normal(size=x.shape).astype(np.float32)
    got_rand = MiniBatchKMeans(k, random_state=seed, n_init=3).fit_predict(rand)
    return {"pins_sampled": int(ids.shape[0]), "clusters": k, "nmi": float(normalized_mutual_info_score(truth, got)),
            "nmi_random": float(normalized_mutual_info_score(truth, got_rand))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--users", type=int, default=5_000_000)
    ap.add_argument("--pins", type=int, default=19_000_000)
    ap.add_argument("--boards", type=int, default=800_000)
    ap.add_argument("--authors", type=int, default=300_000)
    ap.add_argument("--saves", type=int, default=50_000_000)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--config", required=True)
    ap.add_argument("--pq-m", type=int, default=16)
    ap.add_argument("--nlist", type=int, default=4096)
    ap.add_argument("--nmi-sample", type=int, default=200_000)
    ap.add_argument("--steps", nargs="*", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    steps = {
        "generate": [*GRAPHREC, "-q", "generate", "pinterest", "--users", str(args.users), "--pins", str(args.pins),
                     "--boards", str(args.boards), "--authors", str(args.authors), "--saves", str(args.saves),
                     "--clusters", str(args.clusters), "--out", str(work / "data")],
        "build": [*GRAPHREC, "-q", "build", "--schema", str(ROOT / "graphs" / "pinterest-synthetic.yaml"), "--data",
                  str(work / "data"), "--out", str(work / "g")],
        "partition": [*GRAPHREC, "-q", "partition", str(work / "g"), "--partitions", str(args.partitions)],
        "train": [*GRAPHREC, "train", "twhin", "--config", args.config, "--graph", str(work / "g"), "--out",
                  str(work / "run"), "--partitions", str(args.partitions), "--workers", str(args.workers)],
        # retrieval vectors of one small relation only: the user→pin ones would add 12 GB to the
        # disk (the pin index below is built over nodes/pin.parquet, item to item)
        "export": [*GRAPHREC, "-q", "export", "--run", str(work / "run"), "--out", str(work / "emb"),
                   "--retrieval", "user:follows_author:author"],
        "index": [*GRAPHREC, "-q", "index", "--embeddings", str(work / "emb"), "--target", "pin",
                  "--out", str(work / "index"), "--kind", "ivf", "--nlist", str(args.nlist),
                  "--pq-m", str(args.pq_m)],
    }
    marks = {"generate": work / "data" / "saves.parquet", "build": work / "g" / "manifest.json",
             "partition": work / "g" / "partitions" / f"P{args.partitions}-min0-seed0",
             "train": work / "run" / "run.json", "export": work / "emb" / "manifest.json",
             "index": work / "index"}
    results = []
    for name, argv in steps.items():
        if args.steps is not None and name not in args.steps:
            continue
        if args.steps is None and marks[name].exists():
            continue
        r = run_step(name, argv, work / f"{name}.log")
        if name == "train" and r["rc"] == 0:
            info = json.loads((work / "run" / "run.json").read_text())
            h = info["summary"]["history"][-1]
            r.update({"positives_per_s": h["positives_per_s"], "epoch_seconds": h["seconds"],
                      "positives": int(h["positives_per_s"] * h["seconds"]), "partitions": info["partitions"],
                      "dim": info["config"]["dim"]})
        results.append(r)
        print(json.dumps(r), flush=True)
        if r["rc"] != 0:
            break
    else:
        if args.steps is None or "nmi" in args.steps:
            r = {"step": "nmi", **nmi(work, args.nmi_sample)}
            results.append(r)
            print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
