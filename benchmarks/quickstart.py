"""The quickstart job's quality, chosen on valid and reported on test over seeds.

    python benchmarks/quickstart.py select  [--work DIR]            # TwHIN negatives, picked on valid
    python benchmarks/quickstart.py seeds   [--work DIR] [--seeds 0 1 2]

``select``: builds the quickstart data, graph and split once (``configs/quickstart.yaml``:
synthetic Pinterest-like tables, chronological 80/10/10 split of ``user:saves:pin`` with
side relations cut at each user's first held-out time) and trains TwHIN
(``configs/twhin-pinterest.yaml`` with the job's overrides) with each negative-sampling
variant, seed 0, in-process. Criterion, fixed before looking: **valid** user→item
Recall@20 under the new-items protocol. Only valid figures are printed.

``seeds``: runs the whole job (``graphrec run configs/quickstart.yaml --seed S``, local
Ray as configured) once per seed and prints, per model and for the popularity baseline,
valid Recall@20 and test Recall@10/20/100, NDCG@20, item→item HitRate@10 as mean ± std
over the seeds, and each model's test Recall@20 over popularity's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
JOB = ROOT / "configs" / "quickstart.yaml"

# negative sampling of TwHIN on the quickstart graph (the rest of the config unchanged)
NEGATIVES = {
    "in-batch + 100 uniform, both sides (TwHIN paper default)": {"uniform": 100, "in_batch": True, "corrupt": "both"},
    "1000 uniform, both sides": {"uniform": 1000, "in_batch": False, "corrupt": "both"},
    "1000 uniform, tails only": {"uniform": 1000, "in_batch": False, "corrupt": "tail"},
    "every pin (exhaustive), tails only": {"uniform": 1000, "in_batch": False, "corrupt": "tail",
                                           "exhaustive_max_nodes": 10000},
}


def build_split(work: Path):
    from graphrec.eval.split import chronological_split, load_split
    from graphrec.datasets import generate_pinterest
    from graphrec.graph import build_graph, load_schema
    from graphrec.graph.store import parse_edge_type
    from graphrec.pipeline import _resolve, load_job_config

    cfg, base = load_job_config(JOB)
    if not (work / "split" / "split.json").is_file():
        generate_pinterest(cfg.data.generate, work / "data", overwrite=True, progress=False)
        store = build_graph(load_schema(_resolve(cfg.graph_schema, base)), work / "graph", data_dir=work / "data",
                            overwrite=True, progress=False)
        chronological_split(store, parse_edge_type(cfg.split.relation), cfg.split.fractions, cfg.split.min_interactions,
                            out=work / "split", overwrite=True, cut_side_relations=cfg.split.cut_side_relations)
    return cfg, base, load_split(work / "split")


def select(args):
    from graphrec.pipeline import _model_config
    from graphrec.train.evaluate import popularity_on_split, ranking_on_split
    from graphrec.run.directory import open_run
    from graphrec.train.runs import fit

    cfg, base, split = build_split(args.work)
    rows = [("popularity", popularity_on_split(split, "valid", (20,), item_to_item=False)["user_to_item"]["recall@20"],
             0.0)]
    print(f"popularity: valid R@20 {rows[0][1]:.4f}", flush=True)
    for name, neg in NEGATIVES.items():
        section = cfg.twhin.model_copy(update={"overrides": {**cfg.twhin.overrides, "negatives": neg, "threads": 1}})
        mcfg = _model_config(section, "twhin", base, cfg.ray, seed=0)
        run = args.work / "runs" / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        t0 = time.perf_counter()
        fit(mcfg, split.path / "train", run, use_ray=False, overwrite=True)
        secs = time.perf_counter() - t0
        model = open_run(run).model
        v = ranking_on_split(model, split, "valid", ks=(20,))["recall@20"]
        rows.append((name, v, secs))
        print(f"{name}: valid R@20 {v:.4f} ({secs:.0f}s)", flush=True)
    best = max(rows[1:], key=lambda r: r[1])
    print("\n| TwHIN negatives | valid R@20 (new items) | train s |\n|---|---|---|")
    for name, v, secs in rows:
        print(f"| {name}{' **[valid pick]**' if name == best[0] else ''} | {v:.4f} | {secs:.0f} |")


def seeds(args):
    import subprocess

    runs = []
    for seed in args.seeds:
        out = args.work / f"job-seed{seed}"
        if not (out / "summary.json").is_file():
            cmd = [sys.executable, "-m", "graphrec.cli", "-q", "run", str(JOB), "--out", str(out), "--seed", str(seed)]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        runs.append(json.loads((out / "summary.json").read_text()))
    ev = [r["evaluation"] for r in runs]
    names = list(ev[0]["models"])

    def ms(values):
        a = np.asarray(values, dtype=float)
        return f"{a.mean():.4f} ± {a.std(ddof=1):.4f}" if a.size > 1 else f"{a.mean():.4f}"

    print(f"\nseeds {args.seeds}; user→item: {ev[0]['protocols']['user_to_item']}\n")
    print("| model | valid R@20 | test R@10 | test R@20 | test R@100 | test NDCG@20 | R@20 / popularity | i2i HR@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for m in names:
        u = [e["models"][m]["user_to_item"] for e in ev]
        ratio = [e["models"][m]["user_to_item"]["recall@20"] / e["models"]["popularity"]["user_to_item"]["recall@20"]
                 for e in ev]
        print(f"| {m} | {ms([e['valid'][m]['user_to_item']['recall@20'] for e in ev])} | "
              f"{ms([x['recall@10'] for x in u])} | {ms([x['recall@20'] for x in u])} | {ms([x['recall@100'] for x in u])} | "
              f"{ms([x['ndcg@20'] for x in u])} | {np.mean(ratio):.2f}x | "
              f"{ms([e['models'][m]['item_to_item']['hit@10'] for e in ev])} |")
    u = ev[0]["models"]["popularity"]["user_to_item"]
    print(f"\nusers evaluated {u['users']:,}, skipped (no new target) {u['users_skipped']:,}, "
          f"held-out repeats {u['heldout_repeats']:.1%}; candidates from: {[r['recommend']['model'] for r in runs]}; "
          f"job seconds: {[round(r['seconds']) for r in runs]}")
    print("\nrepeat consumption (separate protocol, test R@20):",
          {m: ms([e["models"][m]["user_to_item_with_repeats"]["recall@20"] for e in ev]) for m in names})
    print("cluster recovery NMI:", {m: ms([r["cluster_recovery"][m]["nmi"] for r in runs]) for m in runs[0].get(
        "cluster_recovery", {})})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["select", "seeds"])
    ap.add_argument("--work", type=Path, default=None, help="working directory (reused: finished steps are skipped)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    args.work = args.work or Path(tempfile.mkdtemp(prefix="quickstart-bench-"))
    args.work.mkdir(parents=True, exist_ok=True)
    select(args) if args.what == "select" else seeds(args)


if __name__ == "__main__":
    main()
