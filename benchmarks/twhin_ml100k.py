"""User→item retrieval quality of TwHIN on ML-100K vs implicit ALS, same split.

    python benchmarks/twhin_ml100k.py [--variants benchmarks/twhin_ml100k_variants.json]

1. Builds graphs/movielens-100k-full.yaml (ratings, Freebase KG, item-entity links and
   the user/item attributes as nodes) and splits ``user:rated:item`` per user by time
   80/10/10 (``graphrec split``); every model trains on the train graph only.
2. implicit ALS (``implicit.als.AlternatingLeastSquares``) on the binary train
   user×item matrix, grid-searched on valid Recall@20 (factors × regularisation × alpha).
3. TwHIN variants (relation weights, negatives, dims…) from the variants file, each
   trained once, selected on valid, reported on test.

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
    rows.append({"model": "popularity", "valid_recall@20": None, **{k: te[k] for k in ("recall@20", "ndcg@20", "ndcg@10")}})

    if not args.skip_als:
        import implicit

        x = sp.csr_matrix((np.ones(rel.num_edges, np.float32), np.asarray(rel.indices), np.asarray(rel.indptr)),
                          shape=(n_users, n_items))
        best = None
        t0 = time.perf_counter()
        for f, reg, alpha in itertools.product([32, 64, 128], [0.01, 0.1, 1.0, 10.0], [1.0, 10.0, 40.0]):
            m = implicit.als.AlternatingLeastSquares(factors=f, regularization=reg, alpha=alpha, iterations=15,
                                                     random_state=0, num_threads=args.threads)
            m.fit(x, show_progress=False)
            u, i = torch.from_numpy(np.asarray(m.user_factors)), torch.from_numpy(np.asarray(m.item_factors))
            v = ranking(lambda q: u[q] @ i.T, "valid")["recall@20"]
            if best is None or v > best[0]:
                best = (v, {"factors": f, "regularization": reg, "alpha": alpha}, u, i)
        v, params, u, i = best
        te = ranking(lambda q: u[q] @ i.T, "test")
        rows.append({"model": f"implicit ALS {params}", "valid_recall@20": v, "seconds": time.perf_counter() - t0,
                     **{k: te[k] for k in ("recall@20", "ndcg@20", "ndcg@10")}})
        print(json.dumps(rows[-1]), flush=True)

    variants = json.loads(Path(args.variants).read_text())
    for name, cfg_dict in variants.items():
        if args.only and name not in args.only:
            continue
        cfg = parse_config({**cfg_dict, "threads": args.threads})
        t0 = time.perf_counter()
        fit_twhin(cfg, s.train.path, work / "run", use_ray=False, overwrite=True)
        model, _, _ = load_run(work / "run")
        va = ranking_on_split(model, s, "valid", ks=(20,))
        te = ranking_on_split(model, s, "test", ks=(10, 20))
        rows.append({"model": f"TwHIN {name}", "valid_recall@20": va["recall@20"], "seconds": time.perf_counter() - t0,
                     **{k: te[k] for k in ("recall@20", "ndcg@20", "ndcg@10")}})
        print(json.dumps(rows[-1]), flush=True)

    print("\n| model | valid R@20 | test R@20 | test NDCG@20 | test NDCG@10 | train s |\n|---|---|---|---|---|---|")
    for r in rows:
        v = f"{r['valid_recall@20']:.4f}" if r.get("valid_recall@20") is not None else "-"
        sec = f"{r['seconds']:.0f}" if "seconds" in r else "-"
        print(f"| {r['model']} | {v} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {r['ndcg@10']:.4f} | {sec} |")


if __name__ == "__main__":
    main()
