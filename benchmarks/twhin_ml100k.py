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

Metrics: Recall@20 and NDCG@20 on test with full ranking over all 1,682 items, train and
valid items masked (:func:`graphrec.eval.evaluate_ranking`); popularity as a floor.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--variants", default=str(ROOT / "benchmarks" / "twhin_ml100k_variants.json"))
    ap.add_argument("--only", nargs="*", help="run only these variant names")
    ap.add_argument("--skip-als", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per model (mean ± std reported)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from graphrec.eval import chronological_split, evaluate_ranking, load_split
    from graphrec.graph import build_graph, load_schema
    from graphrec.train.config import parse_config
    from graphrec.train.evaluate import ranking_on_split
    from graphrec.train.twhin import fit_twhin, load_run

    work = Path(tempfile.mkdtemp(prefix="twhin-ml100k-"))
    g = build_graph(load_schema(ROOT / "graphs" / "movielens-100k-full.yaml"), work / "g", data_dir=args.data, progress=False)
    chronological_split(g, ET, fractions=(0.8, 0.1, 0.1), out=work / "split")
    s = load_split(work / "split")
    rel = s.train.relation(ET)
    n_users, n_items = rel.num_src, rel.num_dst
    rows = []

    def ranking(score_fn, part):
        seen = s.seen_csr(include_valid=(part == "test"))
        return evaluate_ranking(score_fn, s.heldout_csr(part), n_items, seen=seen, ks=(10, 20))

    pop = torch.from_numpy(np.bincount(np.asarray(rel.indices), minlength=n_items).astype(np.float32))
    te = ranking(lambda u: pop.expand(len(u), n_items), "test")
    rows.append({"model": "popularity", "valid_recall@20": ranking(lambda u: pop.expand(len(u), n_items), "valid")["recall@20"],
                 **{k: te[k] for k in ("recall@20", "ndcg@20", "ndcg@10")}})

    if not args.skip_als:
        import implicit

        x = sp.csr_matrix((np.ones(rel.num_edges, np.float32), np.asarray(rel.indices), np.asarray(rel.indptr)),
                          shape=(n_users, n_items))

        def als(f, reg, alpha, seed):
            m = implicit.als.AlternatingLeastSquares(factors=f, regularization=reg, alpha=alpha, iterations=15,
                                                     random_state=seed, num_threads=args.threads)
            m.fit(x, show_progress=False)
            u, i = torch.from_numpy(np.asarray(m.user_factors)), torch.from_numpy(np.asarray(m.item_factors))
            return lambda q: u[q] @ i.T

        best = None
        t0 = time.perf_counter()
        for f, reg, alpha in itertools.product([32, 64, 128, 256], [0.01, 0.1, 1.0, 10.0, 30.0], [1.0, 10.0, 40.0]):
            v = ranking(als(f, reg, alpha, 0), "valid")["recall@20"]
            if best is None or v > best[0]:
                best = (v, (f, reg, alpha))
        params = best[1]
        runs = []
        for seed in args.seeds:  # the valid pick, retrained with every seed
            score = als(*params, seed)
            runs.append((ranking(score, "valid")["recall@20"], ranking(score, "test")))
        rows.append(summarize_runs(f"implicit ALS (factors {params[0]}, reg {params[1]}, alpha {params[2]})", runs,
                                   time.perf_counter() - t0))
        print(json.dumps(rows[-1]), flush=True)

    variants = json.loads(Path(args.variants).read_text())
    for name, cfg_dict in variants.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        runs = []
        for seed in args.seeds:
            cfg = parse_config({**cfg_dict, "seed": seed, "threads": args.threads})
            fit_twhin(cfg, s.train.path, work / "run", use_ray=False, overwrite=True)
            model, _, _ = load_run(work / "run")
            runs.append((ranking_on_split(model, s, "valid", ks=(20,))["recall@20"],
                         ranking_on_split(model, s, "test", ks=(10, 20))))
        rows.append(summarize_runs(f"TwHIN {name}", runs, time.perf_counter() - t0))
        print(json.dumps(rows[-1]), flush=True)

    n = len(args.seeds)
    print(f"\n| model | valid R@20 | test R@20 | test NDCG@20 | test NDCG@10 | seconds |  (mean ± std over {n} seed(s))")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [_fmt(r.get(k)) for k in ("valid_recall@20", "recall@20", "ndcg@20", "ndcg@10")]
        sec = f"{r['seconds']:.0f}" if r.get("seconds") else "-"
        print(f"| {r['model']} | {' | '.join(cells)} | {sec} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def summarize_runs(name: str, runs: list, seconds: float) -> dict:
    """Mean and std over seeds of ``[(valid recall@20, test metrics)]``."""
    row = {"model": name, "seeds": len(runs), "seconds": seconds}
    cols = {"valid_recall@20": [v for v, _ in runs]}
    for k in ("recall@20", "ndcg@20", "ndcg@10"):
        cols[k] = [t[k] for _, t in runs]
    for k, vals in cols.items():
        row[k] = [float(np.mean(vals)), float(np.std(vals))]
    return row


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, list):
        return f"{x[0]:.4f} ± {x[1]:.4f}" if x[1] > 0 else f"{x[0]:.4f}"
    return f"{x:.4f}"


if __name__ == "__main__":
    main()
