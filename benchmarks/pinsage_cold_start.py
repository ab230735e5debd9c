"""Cold start on ML-100K: inductive PinSage on items it never saw, next to content baselines.

    python benchmarks/pinsage_cold_start.py [--part test|valid] [--seeds 0 1 2]
        [--variant NAME KEY=VALUE ...]... [--json rows.json]

Protocol (``graphrec split --cold-items``):

1. Build ``graphs/movielens-100k.yaml`` (ratings; item features release year, genres,
   title tokens; the Freebase knowledge graph through ``ml-100k.link``).
2. ``--part test``: ``graphrec split --cold-items 0.1`` — the newest 10% of the items by
   first rating leave the train graph entirely (nodes, features, ratings, KG links);
   their ratings are the cold test set. ``--part valid``: ``--cold-items 0.1
   --cold-valid-items 0.1`` — the same cold test items, plus the 10% just older than
   them held out the same way as cold *validation* items; every setting is chosen there
   (the test items are never looked at).
3. Each model trains on ``SPLIT/train``; ``graphrec infer --graph SPLIT/cold_graph``
   embeds every item and user of the graph that holds the cold items with their
   features and KG links but none of their ratings (user vectors from their history
   there).
4. ``cold_items`` protocol (``graphrec evaluate --inference``): for each user with a
   rating of a cold item of the part, rank the part's cold items only; Recall@10 and
   NDCG@10. Baselines on the same protocol: ``content (features)`` (TF-IDF cosine of the
   item's genres / title words / year decile to the mean of the user's history),
   ``content (features+graph)`` (plus the item's knowledge-graph neighbours within two
   hops: its film's actors, director, genres...), random (exact expectation). Reference
   rows that are not models show what the protocol rewards: oracle popularity (the cold
   items' own held-out rating counts), newest release first, and content (features)
   split in two, one profile for every user (the mean of all the users' profiles) and
   the personal rest. Each model row also reports the R@10 of its personal part (its
   scores minus each cold item's mean score over all users).
   ``benchmarks/cold_start_bounds.py`` goes further on the same split.
5. Warm quality of the same run: the warm items' per-user chronological valid/test
   (``new_items`` user→item Recall@20, ``item_to_item`` HitRate@10), next to the
   transductive config (``configs/pinsage-ml100k.yaml``) trained on the same train graph.

Rows: mean ± std (population) over ``--seeds``. Skips (message, exit 0) without ML-100K.
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
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ET = "user:rated:item"
CONFIGS = {"inductive": ROOT / "configs" / "pinsage-ml100k-inductive.yaml",
           "transductive": ROOT / "configs" / "pinsage-ml100k.yaml"}


def _set(cfg: dict, key: str, value) -> None:
    d = cfg
    *path, last = key.split(".")
    for k in path:
        d = d[k]
    d[last] = value


def run_model(name: str, cfg: dict, split_dir: Path, work: Path, seed: int, part: str) -> dict:
    from graphrec.eval.protocol import cold_ranking_task
    from graphrec.eval.split import load_split
    from graphrec.infer.layerwise import infer_pinsage, read_inference
    from graphrec.run.directory import open_run
    from graphrec.run.config import PinSageConfig, parse_config
    from graphrec.train.evaluate import evaluate_run
    from graphrec.train.runs import fit

    run_dir = work / f"{name}-{seed}"
    c = parse_config({**cfg, "seed": seed}, PinSageConfig)
    t0 = time.perf_counter()
    fit(c, split_dir / "train", run_dir, use_ray=False, progress=False)
    t_train = time.perf_counter() - t0
    inf = infer_pinsage(run_dir, run_dir / "cold-inference", graph=split_dir / "cold_graph", progress=False)
    split = load_split(split_dir)
    cold_vectors = read_inference(inf, open_run(run_dir))
    res = evaluate_run(run_dir, split, part, (10, 20), cold_vectors=cold_vectors)
    m = res["models"]
    task, items = cold_ranking_task(split, part)
    users, vectors, _ = cold_vectors
    personal = personal_part_recall(task, np.asarray(users) @ np.asarray(vectors)[items].T)
    row = {"model": name, "seed": seed, "train_seconds": t_train,
           "cold_recall@10": m["pinsage"]["cold_items"]["recall@10"], "cold_ndcg@10": m["pinsage"]["cold_items"]["ndcg@10"],
           "cold_personal_recall@10": personal,
           "warm_u2i_recall@20": m["pinsage"]["user_to_item"]["recall@20"],
           "warm_i2i_hr@10": m["pinsage"]["item_to_item"]["hit@10"]}
    base = {k: {"cold_recall@10": v["cold_items"]["recall@10"], "cold_ndcg@10": v["cold_items"]["ndcg@10"]}
            for k, v in m.items() if k != "pinsage" and "cold_items" in v}
    base["popularity (warm)"] = {"warm_u2i_recall@20": m["popularity"]["user_to_item"]["recall@20"],
                                 "warm_i2i_hr@10": m["popularity"]["item_to_item"]["hit@10"]}
    row["counts"] = {k: m["pinsage"]["cold_items"][k] for k in ("users", "targets", "candidates")}
    return row, base


def personal_part_recall(task, scores: np.ndarray) -> float:
    """Cold R@10 on ``task`` (:func:`graphrec.eval.protocol.cold_ranking_task`) of the
    personal part of ``scores [U, C]`` (column ``j``: the task's ``j``-th cold item): each
    cold item's score minus its mean score over every user, i.e. without the component
    that ranks the items the same way for everyone."""
    import torch

    from graphrec.eval.protocol import evaluate_task

    s = np.asarray(scores, dtype=np.float32)
    s = torch.from_numpy(s - s.mean(0, keepdims=True))
    return evaluate_task(lambda q: s[q], task, ks=(10,))["recall@10"]


def reference_rows(split_dir: Path, part: str) -> dict:
    """Rankings of the part's cold items that are not models and show what the protocol
    rewards: ``oracle popularity`` ranks them by their own held-out rating counts (it knows
    the answer's popularity; no model can), ``newest release first`` by release year, and
    ``content (features)`` split into the ranking it gives every user alike (each item's
    mean score over all users) and its personal part (:func:`personal_part_recall`)."""
    import torch

    from graphrec.eval.baselines import content_scorer
    from graphrec.eval.protocol import cold_ranking_task, evaluate_task
    from graphrec.eval.split import load_split

    split = load_split(split_dir)
    task, items = cold_ranking_task(split, part)
    _, held = split.cold_heldout(part)
    counts = np.bincount(np.searchsorted(items, held), minlength=items.shape[0])
    year = np.nan_to_num(np.asarray(split.cold_graph().feature("item", "release_year").values, dtype=np.float64)[items])
    # content (features) split in two: the same ranking for every user (each item's mean
    # score over all users, i.e. its cosine with the mean of the users' profiles) and the rest
    n_users = split.cold_graph().num_nodes(ET.split(":")[0])
    content = content_scorer(split.cold_graph(), tuple(ET.split(":")), items, "features")(torch.arange(n_users)).numpy()
    everyone = content.mean(0)
    rows = {}
    for name, score in (("oracle popularity (not a model)", counts), ("newest release first", year),
                        ("content (features), one profile for every user", everyone)):
        s = torch.as_tensor(score, dtype=torch.float32)
        r = evaluate_task(lambda q, s=s: s.expand(len(q), -1).clone(), task, ks=(10,))
        rows[name] = {"cold_recall@10": r["recall@10"], "cold_ndcg@10": r["ndcg@10"]}
    rows["content (features), personal part only"] = {"cold_recall@10": personal_part_recall(task, content)}
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--part", choices=["valid", "test"], default="test")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["inductive", "transductive"],
                    help="configs to run: inductive, transductive and any --variant names")
    ap.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                    help="a variant of the inductive config (e.g. --variant sim05 cold_simulation=0.5)")
    ap.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "ml-100k.inter").is_file():
        print(f"ML-100K not found at {data} (set --data or GRAPHREC_DATA); skipping")
        return 0
    import logging

    logging.getLogger("graphrec").setLevel(logging.WARNING)
    from graphrec.eval.split import cold_item_split
    from graphrec.graph import build_graph, load_schema

    work = Path(args.work or tempfile.mkdtemp(prefix="cold-start-"))
    graph_dir = work / "graph"
    if not (graph_dir / "manifest.json").is_file():
        build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), graph_dir, data_dir=data, progress=False)
    from graphrec.graph import GraphStore
    from graphrec.io import write_json

    split_dir = work / f"split-{args.part}"
    if not (split_dir / "split.json").is_file():
        cold_item_split(GraphStore(graph_dir), ET, 0.1, 0.1 if args.part == "valid" else 0.0, out=split_dir)
    configs = {k: yaml.safe_load(p.read_text()) for k, p in CONFIGS.items()}
    for name, *kvs in args.variant:
        cfg = yaml.safe_load(CONFIGS["inductive"].read_text())
        for kv in kvs:
            k, v = kv.split("=", 1)
            _set(cfg, k, yaml.safe_load(v))
        configs[name] = cfg
    rows, baselines = [], None
    for name in args.models:
        for seed in args.seeds:
            row, base = run_model(name, configs[name], split_dir, work, seed, args.part)
            rows.append(row)
            baselines = baselines or base
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    part = args.part
    print(f"\ncold start on ML-100K ({part}; {rows[0]['counts']['candidates']} cold items, "
          f"{rows[0]['counts']['users']} users, {rows[0]['counts']['targets']} ratings), seeds {args.seeds}:")
    print("| model | cold R@10 | cold NDCG@10 | cold R@10, personal part | warm u2i R@20 | warm i2i HR@10 |\n"
          "|---|---|---|---|---|---|")

    def ms(vals):
        vals = [v for v in vals if v is not None]
        return f"{np.mean(vals):.4f} ± {np.std(vals):.4f}" if len(vals) > 1 else (f"{vals[0]:.4f}" if vals else "")

    for name in args.models:
        r = [x for x in rows if x["model"] == name]
        print(f"| PinSage {name} | {ms([x['cold_recall@10'] for x in r])} | {ms([x['cold_ndcg@10'] for x in r])} | "
              f"{ms([x['cold_personal_recall@10'] for x in r])} | "
              f"{ms([x['warm_u2i_recall@20'] for x in r])} | {ms([x['warm_i2i_hr@10'] for x in r])} |")
    for name, b in baselines.items():
        print(f"| {name} | {ms([b.get('cold_recall@10')])} | {ms([b.get('cold_ndcg@10')])} | | "
              f"{ms([b.get('warm_u2i_recall@20')])} | {ms([b.get('warm_i2i_hr@10')])} |")
    refs = reference_rows(split_dir, part)
    for name, b in refs.items():
        print(f"| {name} | {ms([b['cold_recall@10']])} | {ms([b.get('cold_ndcg@10')])} | | | |")
    if args.json:
        write_json(Path(args.json), {"rows": rows, "baselines": baselines, "references": refs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
