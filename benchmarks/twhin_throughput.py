"""TwHIN training throughput vs PyG's TransE on the ML-100K heterogeneous triples.

    python benchmarks/twhin_throughput.py [--epochs 2] [--batches 30]

Same triples (every base relation of graphs/movielens-100k.yaml: ratings, item-entity
links, 24 Freebase relations; 193,229 edges), same dim (100), 100 negatives scored per
positive, same batch size (1000), margin loss, one thread each
(``torch.set_num_threads(1)``). Five trainers:

a. PyG ``torch_geometric.nn.kge.TransE`` as in PyG's KGE example: the positives are
   repeated 100 times and each copy corrupted by ``TransE.random_sample`` (a separate,
   **untyped** negative triple per positive, head or tail at random), scored and fed to
   ``margin_ranking_loss``; **dense** Adam over every parameter each step.
b. PyG ``TransE`` with **the same negatives as graphrec** (equal negatives): batches of
   one relation, 50 shared typed negative tails and 50 heads per batch; every
   (positive, negative) pair is a triple scored by ``TransE.forward``; dense Adam.
c. as b with PyG's ``sparse=True`` embeddings and ``SparseAdam`` (only touched rows
   updated) — equal negatives and the same optimizer as d.
d. graphrec :class:`graphrec.models.TwHIN` (``transe``): the same batches and shared
   negatives scored with one matmul per side, ``SparseAdam`` on the node rows.
e. graphrec as d with sparse Adagrad (the shipped TwHIN default).

Rates are positives per second over ``--batches`` timed batches after 3 warm-up batches
(x20 for graphrec). (e)/(a) is the historical headline; (d)/(c) isolates the shared
negative matmul at equal negatives and optimizer. Quality at that setting: after
``--epochs`` epochs on a 90/5/5 random split of the same triples, filtered tail+head MRR
and Hits@10 on the test triples (same protocol for every trainer, every known triple
filtered) for a, c and e.
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


def load_triples(graph):
    """Global-id triples ``(h, r, t)`` of every base relation + the ordered edge types."""
    offsets, total = {}, 0
    for t in graph.node_types:
        offsets[t] = total
        total += graph.num_nodes(t)
    ets, hs, rs, ts = [], [], [], []
    for rel in graph.relations():
        if rel.is_reverse:
            continue
        s, d = rel.coo()
        hs.append(s + offsets[rel.src_type])
        ts.append(np.asarray(d, np.int64) + offsets[rel.dst_type])
        rs.append(np.full(s.shape[0], len(ets)))
        ets.append(rel.edge_type)
    return np.concatenate(hs), np.concatenate(rs), np.concatenate(ts), ets, offsets, total


def pyg_step(model, opt, h, r, t, k, margin):
    pos = model(h, r, t)
    nh, nr, nt = model.random_sample(h.repeat(k), r.repeat(k), t.repeat(k))
    neg = model(nh, nr, nt)
    loss = F.margin_ranking_loss(pos.repeat(k), neg, torch.ones_like(neg), margin=margin)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def pyg_shared_step(model, opt, rel, hg, tg, ntg, nhg, margin):
    """PyG TransE on a batch of one relation against shared negatives (global ids):
    every (positive, shared negative) pair scored as its own triple by ``forward``."""
    b, kt, kh = hg.shape[0], ntg.shape[0], nhg.shape[0]
    r = torch.full_like(hg, rel)
    pos = model(hg, r, tg)
    neg_t = model(hg.repeat_interleave(kt), r.repeat_interleave(kt), ntg.repeat(b))
    neg_h = model(nhg.repeat(b), r.repeat_interleave(kh), tg.repeat_interleave(kh))
    neg = torch.cat([neg_t, neg_h])
    p = torch.cat([pos.repeat_interleave(kt), pos.repeat_interleave(kh)])
    loss = F.margin_ranking_loss(p, neg, torch.ones_like(neg), margin=margin)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality-batches", type=int, default=None,
                    help="cap on the batches per quality epoch (a smoke test; default: whole epochs)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from torch_geometric.nn.kge import TransE as PyGTransE

    from graphrec.eval import load_split, random_split
    from graphrec.eval.link_prediction import KnownTriples, filtered_link_prediction
    from graphrec.graph import build_graph, load_schema
    from graphrec.models import TwHIN
    from graphrec.run.config import NegativesConfig, TwHINConfig
    from graphrec.train.twhin import TwHINLoss, make_optimizers
    from graphrec.train.twhin import train_step as ours_step

    work = Path(tempfile.mkdtemp(prefix="twhin-bench-"))
    graph = build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), work / "g", data_dir=args.data, progress=False)
    H, R, T, ets, offsets, total = load_triples(graph)
    n = H.shape[0]
    k, b = args.negatives, args.batch
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    # ---- throughput ---------------------------------------------------------------
    pyg = PyGTransE(total, len(ets), args.dim, margin=1.0)
    pyg_opt = torch.optim.Adam(pyg.parameters(), lr=0.01)
    order = rng.permutation(n)

    def pyg_batch(i):
        sel = order[(i * b) % n : (i * b) % n + b]
        return torch.from_numpy(H[sel]), torch.from_numpy(R[sel]), torch.from_numpy(T[sel])

    def timed(step, make, count):
        for i in range(3):
            step(*make(i))
        t0 = time.perf_counter()
        for i in range(count):
            step(*make(i + 3))
        return count * b / (time.perf_counter() - t0)

    rates = {}
    rates["a"] = timed(lambda *x: pyg_step(pyg, pyg_opt, *x, k, 1.0), pyg_batch, args.batches)

    g = torch.Generator().manual_seed(args.seed)
    by_rel = [np.flatnonzero(R == i) for i in range(len(ets))]
    big = [i for i in range(len(ets)) if by_rel[i].size >= b]

    def ours_batch(i):
        rel = big[i % len(big)]
        ids = by_rel[rel]
        sel = ids[rng.integers(0, ids.size, b)]
        et = ets[rel]
        h = torch.from_numpy(H[sel] - offsets[et[0]])
        t = torch.from_numpy(T[sel] - offsets[et[2]])
        nt = torch.randint(graph.num_nodes(et[2]), (k // 2,), generator=g)
        nh = torch.randint(graph.num_nodes(et[0]), (k // 2,), generator=g)
        return rel, h, t, nt, nh

    def shared_global(i):  # the same batches and shared negatives, as global ids for PyG
        rel, h, t, nt, nh = ours_batch(i)
        et = ets[rel]
        return rel, h + offsets[et[0]], t + offsets[et[2]], nt + offsets[et[2]], nh + offsets[et[0]]

    for key, sparse in (("b", False), ("c", True)):
        torch.manual_seed(args.seed)
        m = PyGTransE(total, len(ets), args.dim, margin=1.0, sparse=sparse)
        o = torch.optim.SparseAdam(list(m.parameters()), lr=0.01) if sparse else torch.optim.Adam(m.parameters(), lr=0.01)
        rates[key] = timed(lambda *x, m=m, o=o: pyg_shared_step(m, o, *x, 1.0), shared_global, args.batches)

    for key, opt_name in (("d", "sparse_adam"), ("e", "adagrad")):
        cfg = TwHINConfig(dim=args.dim, score="transe", loss="margin", margin=1.0, batch_size=b,
                          lr=0.01 if opt_name == "sparse_adam" else 0.1, optimizer=opt_name,
                          negatives=NegativesConfig(uniform=k // 2, in_batch=False, corrupt="both"))
        model = TwHIN({t: graph.num_nodes(t) for t in graph.node_types}, ets, dim=args.dim, score="transe")
        loss_mod, opts = TwHINLoss(model, cfg), make_optimizers(model, cfg)
        rates[key] = timed(lambda *x, lm=loss_mod, o=opts: ours_step(lm, o, *x), ours_batch, args.batches * 20)

    # ---- quality at that setting (graphrec: the cfg of (e), the last one above) -----------
    sp = random_split(graph, fractions=(0.9, 0.05, 0.05), seed=args.seed, out=work / "split")
    train = sp.train
    Htr, Rtr, Ttr, ets_tr, _, _ = load_triples(train)
    assert ets_tr == ets
    test = load_split(sp.path).heldout_triples("test")
    known = KnownTriples({et: graph.num_nodes(et[0]) for et in ets}, {et: graph.num_nodes(et[2]) for et in ets})
    for et in ets:
        s, d = graph.relation(et).coo()
        known.add(et, s, d)

    torch.manual_seed(args.seed)
    pyg = PyGTransE(total, len(ets), args.dim, margin=1.0)
    pyg_opt = torch.optim.Adam(pyg.parameters(), lr=0.01)
    torch.manual_seed(args.seed)
    pyg_c = PyGTransE(total, len(ets), args.dim, margin=1.0, sparse=True)
    pyg_c_opt = torch.optim.SparseAdam(list(pyg_c.parameters()), lr=0.01)
    model = TwHIN({t: graph.num_nodes(t) for t in graph.node_types}, ets, dim=args.dim, score="transe")
    loss_mod, opts = TwHINLoss(model, cfg), make_optimizers(model, cfg)
    ntr = Htr.shape[0]
    by_rel_tr = [np.flatnonzero(Rtr == i) for i in range(len(ets))]
    secs = {"a": 0.0, "c": 0.0, "e": 0.0}
    for epoch in range(args.epochs):
        perm = rng.permutation(ntr)
        t0 = time.perf_counter()
        for s in range(0, ntr, b)[: args.quality_batches]:
            sel = perm[s : s + b]
            pyg_step(pyg, pyg_opt, torch.from_numpy(Htr[sel]), torch.from_numpy(Rtr[sel]), torch.from_numpy(Ttr[sel]), k, 1.0)
        secs["a"] += time.perf_counter() - t0
        batches = []
        for rel, ids in enumerate(by_rel_tr):  # same positives, grouped by relation
            ids = ids[rng.permutation(ids.size)]
            et = ets[rel]
            for s in range(0, ids.size, b):
                sel = ids[s : s + b]
                h = torch.from_numpy(Htr[sel] - offsets[et[0]])
                t = torch.from_numpy(Ttr[sel] - offsets[et[2]])
                nt = torch.randint(graph.num_nodes(et[2]), (k // 2,), generator=g)
                nh = torch.randint(graph.num_nodes(et[0]), (k // 2,), generator=g)
                batches.append((rel, h, t, nt, nh))
        batches = batches[: args.quality_batches]
        t0 = time.perf_counter()
        for rel, h, t, nt, nh in batches:  # (c): PyG, the very same batches and negatives
            et = ets[rel]
            pyg_shared_step(pyg_c, pyg_c_opt, rel, h + offsets[et[0]], t + offsets[et[2]], nt + offsets[et[2]],
                            nh + offsets[et[0]], 1.0)
        secs["c"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for batch in batches:
            ours_step(loss_mod, opts, *batch)
        secs["e"] += time.perf_counter() - t0

    def pyg_scores(m):
        def tails(et, h):
            cand = torch.arange(graph.num_nodes(et[2])) + offsets[et[2]]
            hv = F.normalize(m.node_emb(h + offsets[et[0]]), p=m.p_norm, dim=-1) + m.rel_emb.weight[ets.index(et)]
            return -torch.cdist(hv, F.normalize(m.node_emb(cand), p=m.p_norm, dim=-1), p=m.p_norm)

        def heads(et, t):
            cand = torch.arange(graph.num_nodes(et[0])) + offsets[et[0]]
            tv = F.normalize(m.node_emb(t + offsets[et[2]]), p=m.p_norm, dim=-1) - m.rel_emb.weight[ets.index(et)]
            return -torch.cdist(tv, F.normalize(m.node_emb(cand), p=m.p_norm, dim=-1), p=m.p_norm)

        return tails, heads

    with torch.no_grad():
        quality = {"a": filtered_link_prediction(*pyg_scores(pyg), test, known),
                   "c": filtered_link_prediction(*pyg_scores(pyg_c), test, known),
                   "e": filtered_link_prediction(lambda et, h: model.score_tails(et, h),
                                                 lambda et, t: model.score_heads(et, t), test, known)}
    names = {"a": "PyG TransE, per-positive untyped negatives (random_sample), dense Adam",
             "b": "PyG TransE, graphrec's shared typed negatives (per-triple forward), dense Adam",
             "c": "PyG TransE, graphrec's shared typed negatives (per-triple forward), sparse=True + SparseAdam",
             "d": "graphrec TwHIN transe, shared typed negatives (one matmul per side), SparseAdam",
             "e": "graphrec TwHIN transe, shared typed negatives (one matmul per side), sparse Adagrad"}
    res = {
        "triples": int(n), "relations": len(ets), "dim": args.dim, "negatives_per_positive": k, "batch": b,
        "quality_epochs": args.epochs,
        "trainers": {key: {"name": names[key], "positives_per_s": round(rates[key]),
                           **({"train_seconds": round(secs[key], 1), "test_mrr": round(quality[key]["mrr"], 4),
                               "test_hits@10": round(quality[key]["hits@10"], 4)} if key in quality else {})}
                     for key in "abcde"},
        "ratio_e_over_a": round(rates["e"] / rates["a"], 1),
        "ratio_d_over_c_equal_negatives_and_optimizer": round(rates["d"] / rates["c"], 1),
        "ratio_c_over_a": round(rates["c"] / rates["a"], 1),
    }
    print(json.dumps(res, indent=1))
    print("\n| trainer | positives/s (1 thread) | ratio to (a) |")
    print("|---|---|---|")
    for key in "abcde":
        print(f"| ({key}) {names[key]} | {rates[key]:,.0f} | {rates[key] / rates['a']:.1f}x |")
    print(f"\nequal negatives and optimizer: graphrec (d) / PyG (c) = {rates['d'] / rates['c']:.1f}x")


if __name__ == "__main__":
    main()
