"""A partitioned warm start at scale (issue 15): what ``--init-from`` adds to a
partitioned TwHIN run's memory and time, against the same run started from random tables.

    python benchmarks/warm_start_scale.py --work /tmp/wss --users 1000000 --pins 1500000 \\
        --boards 100000 --authors 50000 --saves 8000000 --partitions 4 --dim 64

Steps (each a subprocess whose process tree is sampled for its peak RSS,
``benchmarks/out_of_core.py``'s ``run_step``; done steps in ``--work`` are skipped):

1. ``generate`` + ``build`` the synthetic Pinterest-like graph ``g`` (the newer graph);
2. ``older``: ``g`` without its newest ``--new-pins`` of pins by first save
   (:func:`graphrec.eval.split.cold_items`, :func:`graphrec.graph.subgraph.drop_nodes`:
   nodes, features and every edge of theirs gone);
3. ``run1``: ``partitions: P`` on the older graph, ``--epochs`` epochs, one process;
4. ``fresh``: the same config on ``g`` from random tables (the reference);
5. ``warm``: the same config on ``g`` with ``--init-from run1``.

Printed: each step's wall time and peak RSS (MB) of its processes, the warm start's init
counts and drift report, and the ratios warm / fresh of wall time and peak RSS. The
tables of ``g`` are ``N × dim × 4`` bytes of vectors plus as much Adagrad state; a warm
start that held either run's tables whole would add at least that much.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from out_of_core import GRAPHREC, run_step  # noqa: E402
from twhin_warm_start import older_graph  # noqa: E402

ET = ("user", "saves", "pin")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--pins", type=int, default=1_500_000)
    ap.add_argument("--boards", type=int, default=100_000)
    ap.add_argument("--authors", type=int, default=50_000)
    ap.add_argument("--saves", type=int, default=8_000_000)
    ap.add_argument("--new-pins", type=float, default=0.1, help="share of pins added after the first run")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "twhin.yaml"
    # the out-of-core benchmark's training settings (benchmarks/RESULTS.md, "Out of core on this box")
    cfg.write_text(f"model: twhin\ndim: {args.dim}\nepochs: {args.epochs}\nbatch_size: 1000\nlr: 0.1\n"
                   "negatives: {uniform: 50, in_batch: true, chunk_size: 50, corrupt: tail}\nloss: softmax\n"
                   "optimizer: adagrad\npartition_buckets: blocks\n"
                   f"partitions: {args.partitions}\nvalidation: {{source: none}}\nthreads: 2\n")
    results = []

    def step(name: str, argv: list[str], mark: Path | None) -> dict | None:
        """Run ``argv`` unless ``mark`` (its output) exists; ``None``: always."""
        if mark is not None and mark.exists():
            return None
        r = run_step(name, argv, work / f"{name}.log")
        results.append(r)
        print(json.dumps(r), flush=True)
        if r["rc"] != 0:
            raise SystemExit(f"{name} failed: {r.get('log_tail', '')}")
        return r

    step("generate", [*GRAPHREC, "-q", "generate", "pinterest", "--users", str(args.users), "--pins", str(args.pins),
                      "--boards", str(args.boards), "--authors", str(args.authors), "--saves", str(args.saves),
                      "--out", str(work / "data")], work / "data" / "saves.parquet")
    step("build", [*GRAPHREC, "-q", "build", "--schema", str(ROOT / "graphs" / "pinterest-synthetic.yaml"), "--data",
                   str(work / "data"), "--out", str(work / "g")], work / "g" / "manifest.json")
    dropped = older_graph(work / "g", work / "older", args.new_pins, ET)
    results.append({"step": "older", "pins_dropped": dropped["dropped"], "pins": dropped["of"]})
    print(json.dumps(results[-1]), flush=True)
    train = [*GRAPHREC, "train", "twhin", "--config", str(cfg), "--no-ray"]
    step("run1", [*train, "--graph", str(work / "older"), "--out", str(work / "run1")], work / "run1" / "run.json")
    timed = {}
    for name, extra in (("fresh", []), ("warm", ["--init-from", str(work / "run1")])):
        # both measured again on every call (they are compared); --overwrite replaces only a graphrec run
        timed[name] = step(name, [*train, "--graph", str(work / "g"), "--out", str(work / name), "--overwrite",
                                  *extra], None)
    info = json.loads((work / "warm" / "run.json").read_text())
    ws = info["summary"]["warm_start"]
    from graphrec.graph.store import GraphStore

    g = GraphStore(work / "g")
    nodes = sum(g.num_nodes(t) for t in g.node_types)
    table_mb = nodes * args.dim * 4 / 2**20
    peak = {k: max(p["peak_rss_mb"] for p in r["processes"]) for k, r in timed.items()}
    summary = {"step": "summary", "nodes": nodes, "edges": int(sum(r.num_edges for r in g.relations()
                                                                   if not r.is_reverse)),
               "table_mb": round(table_mb), "adagrad_state_mb": round(table_mb),
               "init": ws["init"], "drift": {k: ws["drift"][k] for k in ("nodes", "mean_cosine", "knn_overlap@10")},
               "wall_s": {k: r["wall_s"] for k, r in timed.items()}, "peak_rss_mb": peak,
               "warm_over_fresh": {"wall": round(timed["warm"]["wall_s"] / timed["fresh"]["wall_s"], 3),
                                   "peak_rss": round(peak["warm"] / peak["fresh"], 3)},
               "warm_minus_fresh_peak_rss_mb": peak["warm"] - peak["fresh"]}
    results.append(summary)
    print(json.dumps(summary), flush=True)
    if args.json:
        from graphrec.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
