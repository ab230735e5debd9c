"""User→item retrieval quality of TwHIN on ML-100K vs implicit ALS, same split.

    python benchmarks/twhin_ml100k.py [--variants benchmarks/twhin_ml100k_variants.json]

1. Builds graphs/movielens-100k-full.yaml (ratings, Freebase KG, item-entity links and
   the user/item attributes as nodes) and splits ``user:rated:item`` per user by time
   80/10/10 (``graphrec split``); every model trains on the train graph only.
2. implicit ALS (``implicit.als.AlternatingLeastSquares``) on the binary train
   user×item matrix, grid-searched on valid Recall@20 (factors × regularisation ×
   alpha, seed 0), then the valid pick retrained with every ``--seeds`` seed.
3. TwHIN variants (relation weights, negatives, dims…) from the variants file, each
   trained with every ``--seeds`` seed; selected on valid, reported on test as mean ±
   std over the seeds.

Evaluation: every model and the popularity baseline through
:mod:`graphrec.train.evaluate` (``vectors_ranking_on_split`` for ALS,
``ranking_on_split`` for TwHIN, ``popularity_on_split``) under the default ``new_items``
protocol of :mod:`graphrec.eval.protocol`: full ranking over all 1,682 items, each user's
train (and for test, valid) items excluded, held-out ratings of an already-seen item not
targets; every metric is its expectation over a random order of ties. The protocol's
counts (``heldout_repeats``, ``users_skipped``…) are printed and written with the rows.
``--old-evaluator`` also scores the same vectors with the evaluator as it was before the
protocol change (``graphrec/eval/metrics.py`` at 782a109^, read from git history: seen
items masked except the targets, optimistic MRR, top-K ties by item index) and reports the
largest difference per model — on ML-100K (no repeat ratings) only ties can differ.
Selection criterion everywhere: valid Recall@20; test is reported, never used to choose.

Skips (message, exit 0) when ML-100K is absent (``--data`` / ``GRAPHREC_DATA``, default
``../shared/datasets/ml-100k``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ET = ("user", "rated", "item")
OLD_COMMIT = "782a109^"  # the last evaluator before the new-items protocol and random-order ties
COMPARED = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10", "hit@20", "mrr")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--variants", default=str(ROOT / "benchmarks" / "twhin_ml100k_variants.json"))
    ap.add_argument("--only", nargs="*", help="run only these variant names")
    ap.add_argument("--skip-als", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per model (mean ± std reported)")
    ap.add_argument("--json", help="write the rows here (rewritten after every row)")
    ap.add_argument("--old-evaluator", action="store_true",
                    help=f"also score every model with the evaluator of {OLD_COMMIT} (git history) and print the "
                         "largest difference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from graphrec.datasets import ml100k_missing

    missing = ml100k_missing(args.data)
    if missing:
        print(f"skipped: {missing}")
        return

    from graphrec.eval import chronological_split, load_split
    from graphrec.eval.protocol import last_items, ranking_task
    from graphrec.graph import build_graph, load_schema
    from graphrec.graph.csr import build_csr
    from graphrec.run.config import parse_config
    from graphrec.train.evaluate import (item_to_item_on_split, popularity_on_split, ranking_on_split,
                                         vectors_ranking_on_split)
    from graphrec.run.directory import open_run
    from graphrec.train.runs import fit

    work = Path(tempfile.mkdtemp(prefix="twhin-ml100k-"))
    g = build_graph(load_schema(ROOT / "graphs" / "movielens-100k-full.yaml"), work / "g", data_dir=args.data, progress=False)
    split = chronological_split(g, ET, fractions=(0.8, 0.1, 0.1), out=work / "split")
    s = load_split(work / "split")
    rel = s.train.relation(ET)
    n_users, n_items = rel.num_src, rel.num_dst
    rows = []
    protocol = {"split_counts": split.counts,
                **{part: ranking_task(s, part, "new_items").counts for part in ("valid", "test")}}
    print(json.dumps({"protocol": "new_items", **protocol}), flush=True)

    old = old_evaluator() if args.old_evaluator else None
    diffs = {}

    def compare(name, score_fn, new_metrics, item_to_item=False):
        """Score ``score_fn`` with the old evaluator on valid and test (as the benchmarks
        called it: user→item, or item→item from each user's last train item); record the
        largest |old − new| of each metric under ``name``."""
        if old is None:
            return
        d = diffs.setdefault(name, {"max_abs_diff": 0.0, "old": [], "new": []})
        q = torch.from_numpy(last_items(s))
        for part, new in new_metrics.items():
            n_users = s.train.num_nodes(s.relation[0])
            seen = build_csr(*s.seen(part), n_users, n_items)[:2]  # what the old benchmarks masked
            heldout = build_csr(*s.heldout(part), n_users, n_items)[:2]
            with torch.no_grad():
                if item_to_item:
                    o = old.evaluate_ranking(lambda b: score_fn(q[b]), heldout, n_items, seen=seen,
                                             ks=(10, 20), users=np.flatnonzero(q.numpy() >= 0))
                else:
                    o = old.evaluate_ranking(score_fn, heldout, n_items, seen=seen, ks=(10, 20))
            d["old"].append({"part": part, **{k: float(o[k]) for k in COMPARED}})
            d["new"].append({"part": part, **{k: float(new[k]) for k in COMPARED}})
            d["max_abs_diff"] = max(d["max_abs_diff"], *(abs(float(o[k]) - float(new[k])) for k in COMPARED))
        print(json.dumps({"old_evaluator": name, **d}), flush=True)

    def save():  # after every row, so that an interrupted run keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps({"protocol": protocol, "rows": rows, "old_evaluator": diffs},
                                                  indent=1))

    pv, pt = (popularity_on_split(s, part, ks=(10, 20)) for part in ("valid", "test"))
    va, te = pv["user_to_item"], pt["user_to_item"]
    rows.append(summarize_runs("popularity", [(va["recall@20"], te)], 0.0))
    pop = torch.from_numpy(np.asarray(rel.in_degree(), np.float32))
    compare("popularity", lambda q: pop.expand(q.shape[0], -1), {"valid": va, "test": te})
    compare("popularity item→item", lambda q: pop.expand(q.shape[0], -1),
            {"valid": pv["item_to_item"], "test": pt["item_to_item"]}, item_to_item=True)
    print(json.dumps(rows[-1]), flush=True)
    save()

    if not args.skip_als:
        import implicit

        x = sp.csr_matrix((np.ones(rel.num_edges, np.float32), np.asarray(rel.indices), np.asarray(rel.indptr)),
                          shape=(n_users, n_items))

        def als(f, reg, alpha, seed):
            m = implicit.als.AlternatingLeastSquares(factors=f, regularization=reg, alpha=alpha, iterations=15,
                                                     random_state=seed, num_threads=args.threads)
            m.fit(x, show_progress=False)
            return np.asarray(m.user_factors), np.asarray(m.item_factors)

        def ranking(vectors, part, ks=(10, 20)):
            return vectors_ranking_on_split(*vectors, s, part, ks=ks)

        best = None
        t0 = time.perf_counter()
        for f, reg, alpha in itertools.product([32, 64, 128, 256], [0.01, 0.1, 1.0, 10.0, 30.0], [1.0, 10.0, 40.0]):
            v = ranking(als(f, reg, alpha, 0), "valid", ks=(20,))["recall@20"]
            if best is None or v > best[0]:
                best = (v, (f, reg, alpha))
        params = best[1]
        runs = []
        for seed in args.seeds:  # the valid pick, retrained with every seed
            vectors = als(*params, seed)
            va, te = ranking(vectors, "valid"), ranking(vectors, "test")
            runs.append((va["recall@20"], te))
            u, i = (torch.from_numpy(np.asarray(v, np.float32)) for v in vectors)
            compare(f"implicit ALS seed {seed}", lambda q: u[q] @ i.T, {"valid": va, "test": te})
            if old is not None:  # ALS item vectors item→item: the protocol PinSage and LightGCN are scored on
                compare(f"implicit ALS seed {seed}, item vectors item→item", lambda q: i[q] @ i.T,
                        {p: item_to_item_on_split(vectors[1], s, p, ks=(10, 20)) for p in ("valid", "test")},
                        item_to_item=True)
        rows.append(summarize_runs(f"implicit ALS (valid pick: factors {params[0]}, reg {params[1]}, alpha {params[2]})",
                                   runs, time.perf_counter() - t0))
        print(json.dumps(rows[-1]), flush=True)
        save()

    variants = json.loads(Path(args.variants).read_text())
    for name, cfg_dict in variants.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        runs = []
        for seed in args.seeds:
            cfg = parse_config({**cfg_dict, "seed": seed, "threads": args.threads})
            fit(cfg, s.train.path, work / "run", use_ray=False, overwrite=True)
            model = open_run(work / "run").model
            va, te = ranking_on_split(model, s, "valid", ks=(10, 20)), ranking_on_split(model, s, "test", ks=(10, 20))
            runs.append((va["recall@20"], te))
            compare(f"TwHIN {name} seed {seed}", lambda q: model.score_tails(ET, q), {"valid": va, "test": te})
        rows.append(summarize_runs(f"TwHIN {name}", runs, time.perf_counter() - t0))
        print(json.dumps(rows[-1]), flush=True)
        save()

    n = len(args.seeds)
    print(f"\n| model | valid R@20 | test R@20 | test NDCG@20 | test NDCG@10 | seconds |  (mean ± std over {n} seed(s))")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [_fmt(r.get(k)) for k in ("valid_recall@20", "recall@20", "ndcg@20", "ndcg@10")]
        sec = f"{r['seconds']:.0f}" if r.get("seconds") else "-"
        print(f"| {r['model']} | {' | '.join(cells)} | {sec} |")
    c = protocol["test"]
    print(f"\nprotocol new_items (test): {c['users']} users, {c['users_skipped']} skipped, "
          f"heldout_repeats {c['heldout_repeats']}, {c['targets']} targets")
    for name, d in diffs.items():
        print(f"old evaluator ({OLD_COMMIT}) vs new protocol, same vectors, {name}: largest |difference| over "
              f"{', '.join(COMPARED)} (valid, test) = {d['max_abs_diff']:.2g}")
    save()
    shutil.rmtree(work, ignore_errors=True)


def old_evaluator():
    """``graphrec/eval/metrics.py`` as of :data:`OLD_COMMIT`, imported from git history."""
    import importlib.util

    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:graphrec/eval/metrics.py"], check=True,
                         capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp(prefix="old-eval-"))
    try:
        path = tmp / "old_metrics.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("old_metrics", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return mod


def summarize_runs(name: str, runs: list, seconds: float) -> dict:
    """Mean and std (population, ``np.std``) over seeds of ``[(valid recall@20, test
    metrics)]``; ``per_seed`` keeps each seed's figures."""
    row = {"model": name, "seeds": len(runs), "seconds": seconds}
    cols = {"valid_recall@20": [v for v, _ in runs]}
    for k in ("recall@20", "ndcg@20", "ndcg@10"):
        cols[k] = [t[k] for _, t in runs]
    for k, vals in cols.items():
        row[k] = [float(np.mean(vals)), float(np.std(vals))]
    row["per_seed"] = {k: [float(v) for v in vals] for k, vals in cols.items()}
    return row


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, list):
        return f"{x[0]:.4f} ± {x[1]:.4f}" if x[1] > 0 else f"{x[0]:.4f}"
    return f"{x:.4f}"


if __name__ == "__main__":
    main()
