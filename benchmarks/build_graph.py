"""Graph build benchmark: synthetic Pinterest-like data with N save edges.

    python benchmarks/build_graph.py                 # 10M save edges (default)
    python benchmarks/build_graph.py --saves 1000000 # quicker

1. ``graphrec generate pinterest`` (child process): time and peak RSS;
2. ``graphrec build`` of graphs/pinterest-synthetic.yaml (child process): time,
   edges/s and peak RSS of the whole build (read, validate, map ids, CSR both
   directions, features, write + sha256);
3. in this process, on the same save edges: the core of our relation build — id maps
   for users and pins (:class:`graphrec.graph.ids.IdIndex`), both endpoint lookups in
   two threads as the builder does, forward CSR and reverse CSR — against
   ``scipy.sparse.coo_matrix((ones, (row, col))).tocsr()`` on the already-contiguous
   ids (one direction, no id mapping). Best of ``--repeat`` runs each; the ratio is
   ours / scipy.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]


def _child(cmd: list[str]) -> dict:
    """Run a graphrec command in a child Python and return its wall time and peak RSS."""
    code = (
        "import resource, sys, time, json\n"
        "from graphrec.cli import main\n"
        "t = time.perf_counter()\n"
        f"rc = main({cmd!r})\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps({'rc': rc, 'seconds': dt, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stderr}")
    return res


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--saves", type=int, default=10_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from graphrec.graph.csr import build_csr, reverse_csr
    from graphrec.graph.ids import IdIndex

    n = args.saves
    users, pins = max(1000, n // 20), max(2000, n // 10)
    data, graph = args.out / f"pins-{n}", args.out / f"graph-{n}"
    gen = _child(["-q", "generate", "pinterest", "--users", str(users), "--pins", str(pins),
                  "--boards", str(max(100, pins // 20)), "--authors", str(max(50, pins // 50)),
                  "--saves", str(n), "--clusters", "100", "--seed", str(args.seed), "--out", str(data), "--overwrite"])
    build = _child(["-q", "build", "--schema", str(ROOT / "graphs" / "pinterest-synthetic.yaml"),
                    "--data", str(data), "--out", str(graph), "--overwrite"])
    manifest = json.loads((graph / "manifest.json").read_text())
    total_edges = sum(r["num_edges"] for r in manifest["relations"] if r["base"] is None)

    saves = pq.read_table(data / "saves.parquet", columns=["user_id", "pin_id"])
    user_ids = pq.read_table(data / "users.parquet", columns=["user_id"]).column("user_id")
    pin_ids = pq.read_table(data / "pins.parquet", columns=["pin_id"]).column("pin_id")
    u_vals, p_vals = saves.column("user_id"), saves.column("pin_id")

    def ours(dense=True):
        ui, pi = IdIndex(user_ids, dense=dense), IdIndex(pin_ids, dense=dense)
        with ThreadPoolExecutor(2) as pool:
            u, p = pool.map(lambda a: a[0].lookup(a[1]), [(ui, u_vals), (pi, p_vals)])
        indptr, indices, perm = build_csr(u, p, len(user_ids), len(pin_ids))
        rev = reverse_csr(indptr, indices, len(pin_ids))
        return u, p, indptr, indices, rev

    t_ours, (u, p, indptr, indices, rev) = _best(ours, args.repeat)
    t_hash, _ = _best(lambda: ours(dense=False), args.repeat)
    ones = np.ones(n, dtype=np.float32)
    t_scipy, ref = _best(lambda: sp.coo_matrix((ones, (u, p)), shape=(len(user_ids), len(pin_ids))).tocsr(), args.repeat)
    # same matrix (scipy sorts columns within rows and sums duplicates; compare as sets)
    ours_m = sp.csr_matrix((ones, indices, indptr), shape=ref.shape)
    assert abs(ours_m - ref).sum() == 0, "CSR differs from scipy's"

    res = {
        "save_edges": n,
        "total_edges": total_edges,
        "generate_seconds": round(gen["seconds"], 2),
        "generate_peak_rss_mb": round(gen["peak_rss_mb"]),
        "build_seconds": round(build["seconds"], 2),
        "build_edges_per_s": round(total_edges / build["seconds"]),
        "build_peak_rss_mb": round(build["peak_rss_mb"]),
        "core_ours_seconds": round(t_ours, 3),
        "core_scipy_seconds": round(t_scipy, 3),
        "core_ratio_ours_over_scipy": round(t_ours / t_scipy, 2),
        "core_ours_edges_per_s": round(n / t_ours),
        "id_index": IdIndex(user_ids).kind,
        "core_ours_hash_ids_seconds": round(t_hash, 3),
        "core_ratio_hash_ids_over_scipy": round(t_hash / t_scipy, 2),
        "build_ratio_over_scipy": round(build["seconds"] / t_scipy, 2),
        "peak_rss_this_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(res, indent=1))
    print(f"\nbuild: {total_edges:,} edges ({n:,} saves) in {build['seconds']:.1f}s = {res['build_edges_per_s']:,} edges/s, "
          f"peak RSS {res['build_peak_rss_mb']} MB")
    print(f"core (map ids + CSR both directions) {t_ours:.3f}s vs scipy coo->csr {t_scipy:.3f}s: "
          f"ratio {res['core_ratio_ours_over_scipy']}x ({res['id_index']} id table); "
          f"with hashed ids {t_hash:.3f}s, ratio {res['core_ratio_hash_ids_over_scipy']}x")


if __name__ == "__main__":
    main()
