"""Random-walk sampler throughput: walk steps per CPU-second, single thread.

    python benchmarks/random_walk.py                    # ML-100K + a ~20M-edge synthetic graph
    python benchmarks/random_walk.py --saves 1000000    # quicker synthetic graph

For each graph, walks from ``--seeds`` seed items with the PinSage settings of the
configs (``--num-walks`` walks of ``--walk-length`` metapath rounds, restart 0.5):

* **ours**: :class:`graphrec.sampling.RandomWalkSampler` (vectorised numpy gathers on
  the store's memory-mapped CSR) — walk steps (hops) per CPU-second;
* **top-T**: :func:`graphrec.sampling.top_t_visits` (T = 50) on the visits of those
  walks — its CPU time next to the walks' (target: no slower);
* **reference** (same script, same CSR, same semantics): the walk written the plain
  way, one walker at a time in Python, on a subset of the seeds. (The compiled walkers
  torch_cluster / pyg-lib are not installable here; the row records whether they are
  importable; the PinSage issue quotes DGL 2.1's C++ walker at ≈ 2.7M steps/s on this
  kind of machine.)

Single thread: ``OMP_NUM_THREADS=1`` etc. are set before numpy loads; CPU time from
``time.process_time``. Graphs: ``graphs/movielens-100k.yaml`` (item→user→item), and
``graphrec generate pinterest`` + ``graphs/pinterest-synthetic.yaml`` with pin→user→pin
and pin→board→pin mixed 1:1.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def reference_walk(hops: list[tuple[np.ndarray, np.ndarray]], paths: list[list[int]], weights: np.ndarray,
                   seeds: np.ndarray, num_walks: int, walk_length: int, restart: float, rng) -> np.ndarray:
    """One walker at a time, one hop at a time (what a first implementation does)."""
    out = np.full((seeds.shape[0], num_walks * walk_length), -1, dtype=np.int64)
    rand = rng.random
    for i, s in enumerate(seeds.tolist()):
        for w in range(num_walks):
            cur = s
            for r in range(walk_length):
                if r > 0 and rand() < restart:
                    cur = s
                path = paths[0] if len(paths) == 1 else paths[int(rng.choice(len(paths), p=weights))]
                ok = True
                for h in path:
                    indptr, indices = hops[h]
                    lo, hi = int(indptr[cur]), int(indptr[cur + 1])
                    if hi == lo:
                        ok = False
                        break
                    cur = int(indices[lo + int(rand() * (hi - lo))])
                if ok:
                    out[i, w * walk_length + r] = cur
                else:
                    cur = s
    return out


def measure(name: str, store, metapaths, seeds: np.ndarray, num_walks: int, walk_length: int, top_t: int,
            ref_seeds: int) -> dict:
    from graphrec.sampling import RandomWalkSampler, top_t_visits

    sampler = RandomWalkSampler(store, metapaths, restart_prob=0.5)
    steps_per_walk = walk_length * sampler.steps_per_round
    rng = np.random.default_rng(0)
    sampler.walk(seeds[:1000], num_walks, walk_length, rng)  # warm the page cache of the mmapped CSR
    t = time.process_time()
    visits = sampler.walk(seeds, num_walks, walk_length, rng)
    walk_cpu = time.process_time() - t
    steps = seeds.shape[0] * num_walks * steps_per_walk
    t = time.process_time()
    top_t_visits(visits, top_t, exclude=seeds)
    topt_cpu = time.process_time() - t

    hop_ids = {}
    hops = []
    paths = []
    for p in sampler.paths:
        ids = []
        for st in p:
            if st not in hop_ids:
                indptr, indices, _, _ = st.csr(store)
                hop_ids[st] = len(hops)
                hops.append((indptr, indices))
            ids.append(hop_ids[st])
        paths.append(ids)
    sub = seeds[:ref_seeds]
    t = time.process_time()
    reference_walk(hops, paths, sampler.weights, sub, num_walks, walk_length, 0.5, np.random.default_rng(1))
    ref_cpu = time.process_time() - t
    ref_rate = sub.shape[0] * num_walks * steps_per_walk / ref_cpu
    row = {"graph": name, "edges": int(sum(r.num_edges for r in store.relations() if not r.is_reverse)),
           "seeds": int(seeds.shape[0]), "walk_steps": int(steps), "walk_cpu_s": walk_cpu,
           "steps_per_cpu_s": steps / walk_cpu, "top_t": top_t, "top_t_cpu_s": topt_cpu,
           "top_t_over_walk": topt_cpu / walk_cpu, "reference_python_steps_per_cpu_s": ref_rate,
           "ratio_vs_python": (steps / walk_cpu) / ref_rate}
    import importlib.util

    row["compiled_walkers_importable"] = [m for m in ("torch_cluster", "pyg_lib") if importlib.util.find_spec(m)]
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--saves", type=int, default=14_000_000, help="synthetic save edges (14M -> ~21M edges in all)")
    ap.add_argument("--seeds", type=int, default=200_000)
    ap.add_argument("--num-walks", type=int, default=100)
    ap.add_argument("--walk-length", type=int, default=2)
    ap.add_argument("--top-t", type=int, default=50)
    ap.add_argument("--ref-seeds", type=int, default=200)
    ap.add_argument("--work", default=None, help="directory for the generated graph (default: a temp dir)")
    args = ap.parse_args()

    from graphrec.graph import build_graph, load_schema

    work = Path(args.work or tempfile.mkdtemp(prefix="walk-bench-"))
    rows = []
    if (Path(args.data) / "ml-100k.inter").is_file():
        ml = build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), work / "ml", data_dir=args.data,
                         progress=False, overwrite=True)
        items = np.arange(ml.num_nodes("item"))
        seeds = np.resize(items, max(args.seeds // 10, items.shape[0]))
        rows.append(measure("ML-100K item-user-item", ml, [(["item:rated_by:user", "user:rated:item"], 1.0)], seeds,
                            args.num_walks, args.walk_length, args.top_t, args.ref_seeds))
    from inference import graph as synthetic_pins  # benchmarks/inference.py: generated once per --work

    n = args.saves
    store = synthetic_pins(work, n)
    pins = store.num_nodes("pin")
    seeds = np.random.default_rng(0).choice(pins, size=min(args.seeds, pins), replace=False)
    rows.append(measure(f"synthetic pins ({n:,} saves)", store,
                        [(["pin:saved_by:user", "user:saves:pin"], 1.0), (["pin:in_board:board", "board:has_pin:pin"], 1.0)],
                        seeds, args.num_walks, args.walk_length, args.top_t, args.ref_seeds))
    print("\n| graph | edges | walk steps | ours steps/CPU-s | top-T CPU / walk CPU | plain Python steps/CPU-s | ours / Python |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['graph']} | {r['edges']:,} | {r['walk_steps']:,.0f} | {r['steps_per_cpu_s'] / 1e6:.2f}M | "
              f"{r['top_t_over_walk']:.2f} | {r['reference_python_steps_per_cpu_s'] / 1e6:.3f}M | {r['ratio_vs_python']:.0f}× |")


if __name__ == "__main__":
    main()
