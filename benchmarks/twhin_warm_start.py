"""Warm-started TwHIN (``--init-from``) against a full retrain on ML-100K (issue 15).

    python benchmarks/twhin_warm_start.py [--work DIR] [--seeds 0 1 2] [--epochs 2 4 6] [--new-items 0.1]
        [--optimizer-state carried fresh] [--partitions 4]

Protocol:

* ``S``: the ML-100K full heterogeneous graph (``graphs/movielens-100k-full.yaml``),
  chronological 80/10/10 split of ``user:rated:item`` (the split of
  ``benchmarks/partitioned_quality.py``; valid and test R@20 under ``new_items``).
* **The newer graph** is ``S/train``. **The older graph** is ``S/train`` without the
  newest ``--new-items`` of its items by first rating (:func:`graphrec.eval.split.cold_items`),
  dropped entirely — nodes, features, ratings, knowledge-graph links
  (:func:`graphrec.graph.subgraph.drop_nodes`): the catalogue grew by those items and
  their interactions since the first run.
* Per seed: RUN1 trains ``configs/twhin-ml100k.yaml`` (20 epochs) on the older graph; the
  **full retrain** trains it on the newer graph; each **warm start** trains it on the newer
  graph for ``E`` epochs from RUN1 (``init_from``; ``E`` in ``--epochs``), and once more with
  ``freeze_existing`` at the largest ``E``.
* ``--optimizer-state``: each warm start runs with the carried rows' optimizer state taken
  from RUN1's last checkpoint (``carried``, ``carry_optimizer_state: true``) and/or with
  fresh Adagrad accumulators for every row (``fresh``). The mode a config should use is
  the one with the higher valid mean at the largest ``E``; within 0.001, the one that
  drifts less.
* Reported: valid and test Recall@20 on ``S`` (mean ± std over seeds), the share of the
  full retrain's epochs, the drift report of each warm run (``run.json``: mean cosine and
  kNN overlap@10 of the nodes in both graphs), and that every item of the newer graph has
  a finite vector. The ``E`` to read is chosen on **valid** (the smallest whose valid mean
  is within 0.005 of the full retrain's); test is printed for every row but chooses nothing.
* ``--partitions P``: every run (RUN1, the retrain, the warm starts) is a partitioned one
  (``partitions: P``, one process; the config's ``partition_regroup``), so the warm starts
  fill their tables partition by partition from RUN1's tables.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

ET = ("user", "rated", "item")


def older_graph(graph: Path, out: Path, fraction: float, relation: tuple[str, str, str] = ET) -> dict:
    """``graph`` without the newest ``fraction`` of ``relation``'s destination nodes by first
    interaction — nodes, features and every edge of theirs — written to ``out`` once (also
    used by ``benchmarks/warm_start_scale.py``). Returns ``{"dropped": n, "of": N}``."""
    from graphrec.eval.split import cold_items
    from graphrec.graph.store import GraphStore, write_store
    from graphrec.graph.subgraph import drop_nodes

    store = GraphStore(graph)
    _, newest, _ = cold_items(store, relation, fraction)
    if not (out / "manifest.json").is_file():
        arrays, meta, files = drop_nodes(store, relation[2], ~newest)
        meta.pop("split", None)  # not a split's train graph
        write_store(out, arrays, meta, files)
    return {"dropped": int(newest.sum()), "of": int(newest.shape[0])}


def train(graph: Path, out: Path, seed: int, **update) -> tuple[dict, float]:
    from graphrec.run.config import TwHINConfig, load_config
    from graphrec.train.runs import fit

    cfg = load_config(ROOT / "configs" / "twhin-ml100k.yaml", TwHINConfig)
    cfg = TwHINConfig.model_validate({**cfg.model_dump(), "seed": seed, "threads": 1, **update})
    done = out / "run.json"
    if done.is_file() and json.loads(done.read_text())["config"] == cfg.model_dump(mode="json"):
        info = json.loads(done.read_text())  # trained by an earlier call with this --work and these settings
        return info, info["summary"]["seconds"]
    t0 = time.perf_counter()
    info = fit(cfg, graph, out, use_ray=False, overwrite=True)
    return info, time.perf_counter() - t0


def scores(run: Path, split) -> dict:
    from graphrec.run.directory import open_run
    from graphrec.train.evaluate import ranking_on_split

    model = open_run(run).model
    items = model.node_embeddings(ET[2])
    return {"valid": ranking_on_split(model, split, "valid", ks=(20,))["recall@20"],
            "test": ranking_on_split(model, split, "test", ks=(20,))["recall@20"],
            "items": int(items.shape[0]), "items_finite": bool(np.isfinite(items.detach().numpy()).all())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, nargs="+", default=[2, 4, 6], help="warm-start epochs tried")
    ap.add_argument("--new-items", type=float, default=0.1, help="share of items added after the first run")
    ap.add_argument("--optimizer-state", nargs="+", choices=["carried", "fresh"], default=["carried"],
                    help="warm starts with RUN1's optimizer state for the carried rows and/or fresh state")
    ap.add_argument("--partitions", type=int, default=1, help="partitions P of every run (1: unpartitioned)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from graphrec.eval import load_split
    from partitioned_quality import prepare

    work = args.work or Path(tempfile.mkdtemp(prefix="twhin-warm-"))
    split_path = prepare("ml100k", work)
    if split_path is None:
        print("ML-100K not found (GRAPHREC_DATA): skipped")
        return
    split = load_split(split_path)
    new_graph = split_path / "train"
    old_graph = work / "older_graph"
    dropped = older_graph(new_graph, old_graph, args.new_items)
    print(f"older graph: {dropped['dropped']} of {dropped['of']} items dropped -> {old_graph}", flush=True)
    full_epochs = None
    rows = []
    part = {"partitions": args.partitions, "ray": {"workers": 1}} if args.partitions > 1 else {}
    for seed in args.seeds:
        runs = work / ("warm_runs" if args.partitions == 1 else f"warm_runs_p{args.partitions}")
        train(old_graph, runs / f"run1-s{seed}", seed, **part)
        full, wall_full = train(new_graph, runs / f"full-s{seed}", seed, **part)
        full_epochs = full["summary"]["epochs_run"]
        rows.append({"seed": seed, "run": "full retrain", "epochs": full_epochs, "wall_s": wall_full,
                     **scores(runs / f"full-s{seed}", split)})
        print(json.dumps(rows[-1]), flush=True)
        variants = [(e, False, mode) for mode in args.optimizer_state for e in args.epochs]
        variants += [(max(args.epochs), True, args.optimizer_state[0])]
        for e, frozen, mode in variants:
            fresh = mode == "fresh"
            name = f"warm-e{e}{'-frozen' if frozen else ''}{'-fresh' if fresh else ''}-s{seed}"
            info, wall = train(new_graph, runs / name, seed, epochs=e, init_from=str((runs / f"run1-s{seed}").resolve()),
                               freeze_existing=frozen, carry_optimizer_state=not fresh, **part)
            ws = info["summary"]["warm_start"]
            rows.append({"seed": seed, "run": f"warm start, {e} epochs" + (", existing frozen" if frozen else "")
                         + (", fresh optimizer state" if fresh else ""),
                         "epochs": e, "wall_s": wall, "init": ws["init"], "drift": ws["drift"],
                         **scores(runs / name, split)})
            print(json.dumps(rows[-1]), flush=True)
    names = list(dict.fromkeys(r["run"] for r in rows))
    full_valid = np.mean([r["valid"] for r in rows if r["run"] == "full retrain"])
    print(f"\nML-100K, {len(args.seeds)} seeds, partitions {args.partitions}; newer graph S/train, older graph without its newest "
          f"{args.new_items:.0%} of items; Recall@20 (new_items), mean ± std")
    print("| run | epochs (share of the retrain's) | valid R@20 | test R@20 | Δ test vs retrain | drift: mean cosine / "
          "kNN overlap@10 | every item a finite vector |")
    print("|---|---|---|---|---|---|---|")
    full_test = np.mean([r["test"] for r in rows if r["run"] == "full retrain"])
    pick = None
    for name in names:
        sel = [r for r in rows if r["run"] == name]
        v, t = np.array([r["valid"] for r in sel]), np.array([r["test"] for r in sel])
        drift = "" if "drift" not in sel[0] else (
            f"{np.mean([r['drift']['mean_cosine'] for r in sel]):.3f} / {np.mean([r['drift']['knn_overlap@10'] for r in sel]):.3f}")
        share = sel[0]["epochs"] / full_epochs
        first_mode = ("fresh" in name) == (args.optimizer_state[0] == "fresh")  # the E rule reads the first mode
        if (pick is None and name != "full retrain" and "frozen" not in name and first_mode
                and v.mean() >= full_valid - 0.005):
            pick = name
        print(f"| {name} | {sel[0]['epochs']} ({share:.0%}) | {v.mean():.4f} ± {v.std():.4f} | {t.mean():.4f} ± {t.std():.4f} | "
              f"{t.mean() - full_test:+.4f} | {drift} | {all(r['items_finite'] for r in sel)} ({sel[0]['items']} items) |")
    print(f"\nthe valid pick (smallest epochs with valid within 0.005 of the retrain's {full_valid:.4f}): {pick}")
    if args.json:
        from graphrec.io import write_json

        write_json(args.json, rows)


if __name__ == "__main__":
    main()
