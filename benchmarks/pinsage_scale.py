"""PinSage training memory and throughput against the catalogue size (issue 15, item 5).

    python benchmarks/pinsage_scale.py GRAPH [GRAPH ...] [--epochs 1] [--per-interaction 1]
        [--workers W] [--root CHECKOUT]

Each ``GRAPH`` (synthetic Pinterest-like stores of different sizes) trains
``configs/pinsage-pinterest.yaml`` for ``--epochs`` epoch(s), ``positives.per_interaction``
partners per save, and this script polls resident memory every 0.2 s. ``--workers 0``
(default): in one process (loader workers included), the peak RSS of the whole process
tree. ``--workers W``: on W Ray Train workers (``graphrec train pinsage --workers W``),
the peak RSS of each worker's process tree (the worker and its loader processes) and of
the driver process alone. ``--root``: run the graphrec of another checkout (e.g. a
``git worktree`` of an older commit, for a before/after) with this script's config.
Reported per graph: pins, training pairs, pairs/s of the epoch, peak RSS, and the bytes
of the catalogue-sized state that has to grow with it (ID table + its two Adam moments,
the neighbourhood table, item and user vectors) — so that the rest, the per-step memory,
can be compared across sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def train_workers() -> dict[int, psutil.Process]:
    """Ray Train worker processes by pid (their titles name ``RayTrainWorker``)."""
    out = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "TrainWorker" in " ".join(p.info["cmdline"] or []):
                out[p.pid] = p
        except psutil.Error:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--per-interaction", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="Ray Train workers (0: one process, --no-ray)")
    ap.add_argument("--root", default=str(ROOT), help="the graphrec checkout to run (default: this one)")
    args = ap.parse_args()
    import yaml

    from graphrec.graph import GraphStore

    root = Path(args.root).resolve()
    if not (root / "graphrec" / "cli.py").is_file():
        print(f"error: --root {args.root}: not a graphrec checkout (no graphrec/cli.py)", file=sys.stderr)
        return 2
    from graphrec.errors import GraphrecError

    try:
        stores = {g: GraphStore(g) for g in args.graphs}
    except GraphrecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.workers:
        print("| pins | users | training pairs | pairs/s | peak RSS per worker (tree) | driver | catalogue-sized state |"
              "\n|---|---|---|---|---|---|---|")
    else:
        print("| pins | users | training pairs | pairs/s | peak RSS (tree) | catalogue-sized state | rest |\n"
              "|---|---|---|---|---|---|---|")
    for g in args.graphs:
        store = stores[g]
        cfg = yaml.safe_load((ROOT / "configs" / "pinsage-pinterest.yaml").read_text())
        cfg.update(epochs=args.epochs, holdout_fraction=0.002,
                   ray={"workers": max(args.workers, 1), "cpus_per_worker": 1, "max_failures": 0},
                   positives={"window": 3, "sampling": "per_interaction", "per_interaction": args.per_interaction})
        work = Path(tempfile.mkdtemp(prefix="pinsage-scale-"))
        (work / "c.yaml").write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "graphrec.cli", "-q", "train", "pinsage", "--config", str(work / "c.yaml"),
               "--graph", str(Path(g).resolve()), "--out", str(work / "run")]
        cmd += ["--workers", str(args.workers)] if args.workers else ["--no-ray"]
        proc = psutil.Popen(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        peak, driver, workers = 0, 0, {}
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc))
            try:
                driver = max(driver, proc.memory_info().rss)
            except psutil.Error:
                pass
            if args.workers:
                for pid, w in train_workers().items():
                    workers[pid] = max(workers.get(pid, 0), tree_rss(w))
            time.sleep(0.2)
        if proc.returncode != 0:
            print(f"{g}: training failed (exit {proc.returncode})")
            return 1
        info = json.loads((work / "run" / "run.json").read_text())
        hist = info["summary"]["history"]
        n, d, t = store.num_nodes("pin"), cfg["dim"], cfg["walks"]["top_t"]
        u = store.num_nodes("user")
        catalogue = n * cfg["id_dim"] * 4 * 3 + n * t * (8 + 4) + (n + u) * d * 4 + n * cfg["hidden_dim"] * 4 * 4
        pairs = info["summary"].get("train_pairs")
        if args.workers:
            each = " / ".join(f"{v / 2**30:.2f}" for v in sorted(workers.values(), reverse=True)[: args.workers])
            print(f"| {n:,} | {u:,} | {pairs:,} | {hist[-1]['pairs_per_s']:,.0f} | {each} GiB | "
                  f"{driver / 2**30:.2f} GiB | {catalogue / 2**30:.2f} GiB |", flush=True)
        else:
            print(f"| {n:,} | {u:,} | {pairs:,} | {hist[-1]['pairs_per_s']:,.0f} | "
                  f"{peak / 2**30:.2f} GiB | {catalogue / 2**30:.2f} GiB | {(peak - catalogue) / 2**30:.2f} GiB |",
                  flush=True)
        subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
