"""Quality parity of partitioned TwHIN (issue 14): P partitions (on W Ray workers) vs P=1.

    python benchmarks/partitioned_quality.py --datasets kinships ml100k [--partitions 1 2 4]
        [--seeds 0 1 2] [--workers 2] [--work DIR] [--out results.json]

``--set partition_buckets=pairs batches=types`` sets the P > 1 runs' bucket and
batch schemes (each row records its settings).

Protocols (the acceptance's; every type partitioned, ``partition_min_nodes: 0``):

* ``kinships``: Kinships' given train/valid/test, ``configs/twhin-kg.yaml`` unchanged
  (early stopping on the split's valid filtered MRR, best state kept); test filtered MRR,
  head and tail, train + valid + test filtered (:func:`graphrec.train.evaluate.link_prediction_on_split`).
* ``mlkg``: ml-100k.kg, random 90/5/5 split, the same config and metric; ``--kg-epochs``
  caps its epochs (P=1 needs ~20 min to converge on 2 cores).
* ``ml100k``: ML-100K full heterogeneous graph (``graphs/movielens-100k-full.yaml``),
  chronological 80/10/10 split of ``user:rated:item``, ``configs/twhin-ml100k.yaml``
  unchanged (20 epochs, no validation); test Recall@20 under the ``new_items`` protocol
  (:func:`graphrec.train.evaluate.ranking_on_split`).

P=1 always trains in one process (the reference); P>1 on ``--workers`` Ray workers (1:
in one process). Each row: mean ± std over seeds of test (and valid) figures, and the
difference of the means to P=1. Nothing is chosen on test: the configs are the shipped
ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
ML_DATA = Path(os.environ.get("GRAPHREC_DATA", ROOT.parent / "shared" / "datasets" / "ml-100k"))
ET = ("user", "rated", "item")


def prepare(name: str, work: Path) -> Path | None:
    if (work / name / "split" / "split.json").is_file():  # prepared by an earlier run with this --work
        return work / name / "split"
    if name in ("kinships", "mlkg"):
        from kge_peers import prepare as prepare_kg

        return prepare_kg(name, work)
    from graphrec.datasets import ml100k_missing
    from graphrec.eval import chronological_split
    from graphrec.graph import build_graph, load_schema

    if ml100k_missing(str(ML_DATA)):
        return None
    g = build_graph(load_schema(ROOT / "graphs" / "movielens-100k-full.yaml"), work / "ml100k" / "g",
                    data_dir=ML_DATA, progress=False)
    chronological_split(g, ET, fractions=(0.8, 0.1, 0.1), out=work / "ml100k" / "split")
    return work / "ml100k" / "split"


def run_one(name: str, split_path: Path, partitions: int, seed: int, workers: int, out: Path, kg_epochs: int | None,
            settings: dict | None = None, p1_too: bool = False):
    from graphrec.eval import load_split
    from graphrec.run.config import TwHINConfig, load_config
    from graphrec.run.directory import open_run
    from graphrec.train.evaluate import link_prediction_on_split, ranking_on_split
    from graphrec.train.runs import fit

    cfg = load_config(ROOT / "configs" / ("twhin-ml100k.yaml" if name == "ml100k" else "twhin-kg.yaml"), TwHINConfig)
    update = {"seed": seed, "partitions": partitions, "partition_min_nodes": 0, "threads": 1,
              "ray": cfg.ray.model_copy(update={"workers": workers, "cpus_per_worker": 1})}
    if kg_epochs and name != "ml100k":
        update["epochs"] = kg_epochs
    if partitions > 1 or p1_too:
        update.update(settings or {})
    cfg = TwHINConfig.model_validate({**cfg.model_dump(), **update})
    t0 = time.perf_counter()
    info = fit(cfg, split_path / "train", out, use_ray=partitions > 1 and workers > 1, overwrite=True)
    wall = time.perf_counter() - t0
    split = load_split(split_path)
    model = open_run(out).model
    if name == "ml100k":
        te, va = ranking_on_split(model, split, "test", ks=(20,)), ranking_on_split(model, split, "valid", ks=(20,))
        metric = "recall@20"
    else:
        te, va = link_prediction_on_split(model, split, "test"), link_prediction_on_split(model, split, "valid", ks=())
        metric = "mrr"
    s = info["summary"]
    return {"dataset": name, "P": partitions, "seed": seed,
            "settings": {k: getattr(cfg, k) for k in ("partition_buckets", "batches", "optimizer", "partition_logit_correction",
                                                         "partition_regroup")}
            if partitions > 1 else {k: getattr(cfg, k) for k in ("batches", "optimizer")}, "workers": workers if partitions > 1 else 1,
            "metric": metric, "test": te[metric], "valid": va[metric], "epochs_run": s["epochs_run"],
            "best_epoch": s.get("best_epoch"), "wall_s": wall,
            "positives_per_s": float(np.mean([h["positives_per_s"] for h in s["history"]]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["kinships", "ml100k"], choices=["kinships", "mlkg", "ml100k"])
    ap.add_argument("--partitions", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kg-epochs", type=int, default=None)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config fields of the P > 1 runs (YAML values), e.g. partition_buckets=pairs "
                         "batches=types; P = 1 always runs the shipped config")
    ap.add_argument("--set-p1-too", action="store_true", help="apply --set to the P = 1 runs as well")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None, help="write every row as JSON here")
    args = ap.parse_args()
    import yaml

    settings = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    tag = "".join(f"-{v}" for v in settings.values())
    work = Path(args.work or tempfile.mkdtemp(prefix="partq-"))
    rows = []
    for name in args.datasets:
        split = prepare(name, work)
        if split is None:
            print(f"{name}: data absent, skipped")
            continue
        for p in args.partitions:
            for seed in args.seeds:
                r = run_one(name, split, p, seed, args.workers, work / "runs" / f"{name}-P{p}-s{seed}{tag}",
                            args.kg_epochs, settings, args.set_p1_too)
                rows.append(r)
                print(json.dumps(r), flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(rows, indent=1))
    print("\n| dataset | P | workers | metric | test (mean ± std) | valid | Δ test vs P=1 | epochs | positives/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        ref = [r["test"] for r in rows if r["dataset"] == name and r["P"] == 1]
        for p in args.partitions:
            sel = [r for r in rows if r["dataset"] == name and r["P"] == p]
            if not sel:
                continue
            t, v = np.array([r["test"] for r in sel]), np.array([r["valid"] for r in sel])
            delta = f"{t.mean() - np.mean(ref):+.4f}" if ref and p != 1 else ""
            print(f"| {name} | {p} | {sel[0]['workers']} | {sel[0]['metric']} | {t.mean():.4f} ± {t.std():.4f} | "
                  f"{v.mean():.4f} | {delta} | {np.mean([r['epochs_run'] for r in sel]):.0f} | "
                  f"{np.mean([r['positives_per_s'] for r in sel]):,.0f} |")


if __name__ == "__main__":
    main()
