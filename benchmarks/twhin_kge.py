"""Link-prediction quality: our TransE vs PyG's ``torch_geometric.nn.kge.TransE``.

    python benchmarks/twhin_kge.py [--negatives 10] [--epochs 30] [--dim 100]

Data: the Freebase part of ML-100K (``ml-100k.kg``, 91,631 triples, 24 relations) built
with ``graphrec build --triples`` and split 90/5/5 at random (``graphrec split --random``).
Both models: TransE with the L2 norm, the same dim, ``--negatives`` negatives per positive,
batch 1000, margin loss (margin 1), the same number of epochs over the same train
triples, two threads. PyG: a separate corrupted triple per negative
(``TransE.random_sample``), Adam lr 0.01 as in PyG's KGE example. Ours
(:class:`graphrec.models.TwHIN`, ``transe``): each batch of one relation shares
``negatives/2`` uniform negative tails and heads, Adagrad on sparse rows with the lr
picked on the valid triples from ``--lrs`` (PyG keeps its example's Adam lr 0.01).
Filtered MRR and Hits@1/3/10 (head and tail, every known triple filtered) on the test
triples, with the same evaluation code for both.
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
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--negatives", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.2, 0.4], help="our Adagrad lrs, picked on valid")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from torch_geometric.nn.kge import TransE as PyGTransE

    from graphrec.eval import load_split, random_split
    from graphrec.eval.link_prediction import KnownTriples, filtered_link_prediction
    from graphrec.graph import build_graph, triples_schema
    from graphrec.run.config import NegativesConfig, TwHINConfig
    from graphrec.run.directory import open_run
    from graphrec.train.runs import fit

    work = Path(tempfile.mkdtemp(prefix="kge-bench-"))
    graph = build_graph(triples_schema(Path(args.data) / "ml-100k.kg"), work / "kg", progress=False)
    random_split(graph, fractions=(0.9, 0.05, 0.05), seed=args.seed, out=work / "split")
    sp = load_split(work / "split")
    ets = [r.edge_type for r in sp.train.relations()]
    n_ent = graph.num_nodes("entity")
    heads, rels, tails = [], [], []
    for i, et in enumerate(ets):
        s, d = sp.train.relation(et).coo()
        heads.append(s)
        tails.append(np.asarray(d, np.int64))
        rels.append(np.full(s.shape[0], i))
    H, R, T = map(np.concatenate, (heads, rels, tails))
    test = sp.heldout_triples("test")
    known = KnownTriples({et: n_ent for et in ets}, {et: n_ent for et in ets})
    for et in ets:
        s, d = graph.relation(et).coo()  # the full graph: train + valid + test
        known.add(et, s, d)
    k, b = args.negatives, args.batch

    # ---- PyG TransE ------------------------------------------------------------------
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    pyg = PyGTransE(n_ent, len(ets), args.dim, margin=1.0, p_norm=2.0)
    opt = torch.optim.Adam(pyg.parameters(), lr=0.01)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        perm = rng.permutation(H.shape[0])
        for s in range(0, H.shape[0], b):
            sel = perm[s : s + b]
            h, r, t = torch.from_numpy(H[sel]), torch.from_numpy(R[sel]), torch.from_numpy(T[sel])
            pos = pyg(h, r, t)
            neg = pyg(*pyg.random_sample(h.repeat(k), r.repeat(k), t.repeat(k)))
            loss = F.margin_ranking_loss(pos.repeat(k), neg, torch.ones_like(neg), margin=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
    t_pyg = time.perf_counter() - t0

    def pyg_scores(et, x, side):
        rv = pyg.rel_emb.weight[ets.index(et)]
        ent = F.normalize(pyg.node_emb.weight, p=2.0, dim=-1)  # PyG's TransE normalises entities
        q = ent[x] + rv if side == "tail" else ent[x] - rv
        return -torch.cdist(q, ent, p=2.0)

    with torch.no_grad():
        q_pyg = filtered_link_prediction(lambda et, h: pyg_scores(et, h, "tail"), lambda et, t: pyg_scores(et, t, "head"),
                                         test, known)

    # ---- ours: Adagrad lr picked on the valid triples ----------------------------------
    valid = sp.heldout_triples("valid")
    best = None
    for lr in args.lrs:
        cfg = TwHINConfig(dim=args.dim, score="transe", p_norm=2, loss="margin", margin=1.0, batch_size=b, lr=lr,
                          epochs=args.epochs, seed=args.seed, threads=args.threads,
                          negatives=NegativesConfig(uniform=k // 2, in_batch=False, corrupt="both"))
        t0 = time.perf_counter()
        fit(cfg, sp.train.path, work / f"run-{lr}", use_ray=False)
        secs = time.perf_counter() - t0
        model = open_run(work / f"run-{lr}").model
        with torch.no_grad():
            v = filtered_link_prediction(lambda et, h: model.score_tails(et, h), lambda et, t: model.score_heads(et, t),
                                         valid, known)["mrr"]
        print(f"ours lr={lr}: valid MRR {v:.4f} ({secs:.0f}s)", flush=True)
        if best is None or v > best[0]:
            best = (v, lr, secs, model)
    _, best_lr, t_ours, model = best
    with torch.no_grad():
        q_ours = filtered_link_prediction(lambda et, h: model.score_tails(et, h), lambda et, t: model.score_heads(et, t),
                                          test, known)
    keys = ("mrr", "hits@1", "hits@3", "hits@10")
    res = {"triples_train": int(H.shape[0]), "triples_test": q_ours["triples"], "entities": n_ent, "relations": len(ets),
           "dim": args.dim, "negatives_per_positive": k, "epochs": args.epochs,
           "pyg": {**{x: round(q_pyg[x], 4) for x in keys}, "train_seconds": round(t_pyg, 1)},
           "ours": {**{x: round(q_ours[x], 4) for x in keys}, "train_seconds": round(t_ours, 1), "lr": best_lr},
           "mrr_difference_ours_minus_pyg": round(q_ours["mrr"] - q_pyg["mrr"], 4)}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
