"""What the ML-100K cold-start protocol can reward from signals other than a graph model.

    PYTHONPATH=. python benchmarks/cold_start_bounds.py --split SPLIT [--part valid]

``SPLIT``: a cold-item split of ML-100K (``graphrec split --cold-items``, e.g. the one
``benchmarks/pinsage_cold_start.py --work W`` writes to ``W/split-valid``). Every row
ranks the part's cold items for each user with a cold rating (the ``cold_items``
protocol, R@10 / NDCG@10):

* the reference rows of ``pinsage_cold_start.py`` (oracle popularity, newest release
  first, content (features) with one profile for every user, its personal part);
* ``popularity from features``: ridge regression (``scipy.sparse.linalg.lsqr``,
  damping ``--damp``) of the warm items' log(1 + train interactions) on their TF-IDF
  feature vectors, applied to the cold items; the same for everyone;
* ``new-item popularity by release age`` (:func:`debut_age_popularity`): how much the
  warm items that appeared late in the train graph were rated in their first 60 days,
  by their release age when they appeared; read at each cold item's age; the same for
  everyone;
* **optimistic bounds**: ``z(prior) + λ z(content)`` for each prior, with ``λ`` the best
  of {0.25, 0.5, 1, 2} *on the part itself* (z: standardised over all scores). These
  rows are chosen by looking at the part they score, so they are not models: they say
  how far a combination of these signals can go at best; with ``--run`` and
  ``--inference``, also a PinSage run's own cold ranking and its combination with the
  new-item popularity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import lsqr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
LAMBDAS = (0.25, 0.5, 1.0, 2.0)


def _years(ts) -> np.ndarray:
    """Unix seconds -> calendar year, int64."""
    return pd.to_datetime(np.asarray(ts, np.int64), unit="s").year.to_numpy().astype(np.int64)


def feature_popularity(split, items: np.ndarray, damp: float) -> np.ndarray:
    """Ridge prediction of log(1 + interactions) from TF-IDF features, ``[C]``."""
    from graphrec.eval.baselines import content_vectors

    user_type, _, item_type = split.relation
    g, train = split.cold_graph(), split.train
    x = content_vectors(g, item_type, "features", exclude_types=(user_type,)).tocsr()
    warm = g.lookup(item_type, train.node_ids(item_type))
    y = np.log1p(np.asarray(train.relation(split.relation).in_degree(), np.float64))
    a = sp.hstack([x[warm], np.ones((warm.shape[0], 1), np.float32)]).tocsr()
    w = lsqr(a, y, damp=damp)[0]
    return np.asarray(x[items] @ w[:-1]).ravel()


def debut_age_popularity(split, items: np.ndarray, part: str, after_days: int = 30, horizon_days: int = 60
                         ) -> np.ndarray:
    """A new item's expected engagement from its release age, ``[C]``.

    Learned on the warm items that appear late in the train graph (first interaction
    more than ``after_days`` after the graph's first one; earlier ones are the catalogue
    the data starts with): the mean number of interactions in the ``horizon_days`` after
    an item's first one, per age at that first one (its year minus the release year).
    A cold item is read at its age in the year of the part's first held-out rating
    (ages past the oldest seen take the oldest's mean; unknown years 0)."""
    item_type = split.relation[2]
    rel = split.train.relation(split.relation)
    _, dst = rel.coo()
    ts = np.asarray(rel.edge_attr("timestamp"), np.int64)
    n = split.train.num_nodes(item_type)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, dst, ts)
    seen = first < np.iinfo(np.int64).max
    late = seen & (first - ts.min() > after_days * 86400)
    early_on = np.bincount(dst[ts - first[dst] <= horizon_days * 86400], minlength=n).astype(np.float64)
    released = np.asarray(split.train.feature(item_type, "release_year").values, np.float64)
    keep = late & np.isfinite(released)
    age = _years(first[keep]) - released[keep].astype(np.int64)
    ages = np.unique(age)
    mean = np.array([early_on[keep][age == a].mean() for a in ages])
    held_ts = pq.read_table(split.path / f"cold_{part}.parquet", columns=["timestamp"]).column("timestamp").to_numpy()
    cold_released = np.asarray(split.cold_graph().feature(item_type, "release_year").values, np.float64)[items]
    cold_age = _years([held_ts.min()])[0] - cold_released
    pos = np.searchsorted(ages, np.nan_to_num(cold_age, nan=-1e9))
    exact = (pos < ages.shape[0]) & (ages[np.minimum(pos, ages.shape[0] - 1)] == cold_age)
    out = np.where(exact, mean[np.minimum(pos, ages.shape[0] - 1)], 0.0)
    return np.where(np.isfinite(cold_age) & (cold_age > ages[-1]), mean[-1], out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", required=True)
    ap.add_argument("--part", choices=["valid", "test"], default="valid")
    ap.add_argument("--damp", type=float, default=3.0, help="ridge damping of the feature popularity")
    ap.add_argument("--run", default=None, help="a PinSage run trained on SPLIT/train (adds its rows)")
    ap.add_argument("--inference", default=None, help="its `graphrec infer --graph SPLIT/cold_graph` directory")
    args = ap.parse_args()
    if bool(args.run) != bool(args.inference):
        ap.error("--run and --inference go together")
    from graphrec.eval.baselines import content_scorer
    from graphrec.eval.protocol import cold_ranking_task, evaluate_task
    from graphrec.eval.split import load_split
    from pinsage_cold_start import reference_rows

    split = load_split(args.split)
    task, items = cold_ranking_task(split, args.part)
    n_users = split.cold_graph().num_nodes(split.relation[0])
    content = content_scorer(split.cold_graph(), split.relation, items, "features")(torch.arange(n_users)).numpy()

    def score(m: np.ndarray) -> dict:
        m = np.broadcast_to(np.asarray(m, np.float32), (n_users, items.shape[0]))
        return evaluate_task(lambda q: torch.from_numpy(np.ascontiguousarray(m[q.numpy()])), task, ks=(10,))

    def z(m: np.ndarray) -> np.ndarray:
        return (m - m.mean()) / max(float(m.std()), 1e-12)

    rows = {k: (v["cold_recall@10"], v.get("cold_ndcg@10")) for k, v in reference_rows(Path(args.split), args.part).items()}
    r = score(content)
    rows["content (features)"] = (r["recall@10"], r["ndcg@10"])
    priors = {"popularity from features (ridge)": feature_popularity(split, items, args.damp),
              "new-item popularity by release age": np.log1p(debut_age_popularity(split, items, args.part))}
    for name, p in priors.items():
        r = score(p[None])
        rows[name] = (r["recall@10"], r["ndcg@10"])
        best = max(((lam, score(z(p)[None] + lam * z(content))) for lam in LAMBDAS), key=lambda t: t[1]["recall@10"])
        rows[f"*{name} + {best[0]} × content, λ chosen on this part (a bound)*"] = (best[1]["recall@10"], best[1]["ndcg@10"])
    grid = [(a, lam) for a in (0.0, *LAMBDAS) for lam in LAMBDAS]
    ridge, debut = priors.values()
    a, lam, r = max(((a, lam, score(z(debut)[None] + a * z(ridge)[None] + lam * z(content))) for a, lam in grid),
                    key=lambda t: t[2]["recall@10"])
    rows[f"*new-item popularity + {a} × feature popularity + {lam} × content, chosen on this part (a bound)*"] = (
        r["recall@10"], r["ndcg@10"])
    if args.run:
        from graphrec.infer.layerwise import read_inference
        from graphrec.run.directory import open_run

        users, vectors, _ = read_inference(args.inference, open_run(args.run, expect="pinsage"))
        model = np.asarray(users) @ np.asarray(vectors)[items].T
        r = score(model)
        rows[f"PinSage {args.run}"] = (r["recall@10"], r["ndcg@10"])
        lam, r = max(((lam, score(z(debut)[None] + lam * z(model))) for lam in LAMBDAS), key=lambda t: t[1]["recall@10"])
        rows[f"*new-item popularity + {lam} × PinSage, λ chosen on this part (a bound)*"] = (r["recall@10"], r["ndcg@10"])
    print(f"cold items of {args.split} ({args.part}; {items.shape[0]} items, {task.counts['users']} users, "
          f"{task.counts['targets']} ratings):\n| ranking | cold R@10 | cold NDCG@10 |\n|---|---|---|")
    for name, (rec, ndcg) in rows.items():
        print(f"| {name} | {rec:.4f} | {'' if ndcg is None else f'{ndcg:.4f}'} |")
    return 0


if __name__ == "__main__":
    from graphrec.errors import GraphrecError

    try:
        raise SystemExit(main())
    except GraphrecError as err:  # bad input: one line, exit 2
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
