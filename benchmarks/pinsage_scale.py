"""PinSage training memory and throughput against the catalogue size (issue 15, item 5).

    python benchmarks/pinsage_scale.py GRAPH [GRAPH ...] [--epochs 1] [--per-interaction 1]

Each ``GRAPH`` (synthetic Pinterest-like stores of different sizes) trains
``configs/pinsage-pinterest.yaml`` for ``--epochs`` epoch(s) in one process (loader
workers included), ``positives.per_interaction`` partners per save, and this script
polls the resident memory of the whole process tree every 0.2 s. Reported per graph:
pins, training pairs, pairs/s of the epoch, peak RSS of the tree, and the bytes of the
catalogue-sized state that has to grow with it (ID table + its two Adam moments, the
neighbourhood table, item and user vectors) — so that the rest, the per-step memory,
can be compared across sizes.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--per-interaction", type=int, default=1)
    args = ap.parse_args()
    import yaml

    from graphrec.graph import GraphStore

    print("| pins | users | training pairs | pairs/s | peak RSS (tree) | catalogue-sized state | rest |\n"
          "|---|---|---|---|---|---|---|")
    for g in args.graphs:
        store = GraphStore(g)
        cfg = yaml.safe_load((ROOT / "configs" / "pinsage-pinterest.yaml").read_text())
        cfg.update(epochs=args.epochs, holdout_fraction=0.002,
                   positives={"window": 3, "sampling": "per_interaction", "per_interaction": args.per_interaction})
        work = Path(tempfile.mkdtemp(prefix="pinsage-scale-"))
        (work / "c.yaml").write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "graphrec.cli", "-q", "train", "pinsage", "--config", str(work / "c.yaml"),
               "--graph", g, "--out", str(work / "run"), "--no-ray"]
        proc = psutil.Popen(cmd, cwd=ROOT)
        peak, t0 = 0, time.perf_counter()
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc))
            time.sleep(0.2)
        if proc.returncode != 0:
            print(f"{g}: training failed (exit {proc.returncode})")
            return 1
        info = json.loads((work / "run" / "run.json").read_text())
        hist = info["summary"]["history"]
        n, d, t = store.num_nodes("pin"), cfg["dim"], cfg["walks"]["top_t"]
        u = store.num_nodes("user")
        catalogue = n * cfg["id_dim"] * 4 * 3 + n * t * (8 + 4) + (n + u) * d * 4 + n * cfg["hidden_dim"] * 4 * 4
        print(f"| {n:,} | {u:,} | {info['summary']['train_pairs']:,} | {hist[-1]['pairs_per_s']:,.0f} | "
              f"{peak / 2**30:.2f} GiB | {catalogue / 2**30:.2f} GiB | {(peak - catalogue) / 2**30:.2f} GiB |",
              flush=True)
        subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
