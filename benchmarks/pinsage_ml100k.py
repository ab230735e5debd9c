"""PinSage vs LightGCN on ML-100K, same chronological split, plus PinSage ablations.

    python benchmarks/pinsage_ml100k.py [--config configs/pinsage-ml100k.yaml] [--ablations] [--only NAME ...]

1. Builds graphs/movielens-100k.yaml (ratings; item features: release year, genres,
   title tokens) and splits ``user:rated:item`` per user by time 80/10/10 (``graphrec
   split``); every model trains on the train graph only.
2. LightGCN (``torch_geometric.nn.models.LightGCN``, BPR loss with PyG's
   ``recommendation_loss``) trained until valid Recall@20 stops improving.
3. PinSage from the config (and, with ``--ablations``, the ablation variants: pooling,
   curriculum, layers, T), selected on valid, reported on test.

Metrics (test): item→item HitRate@10 and MRR — query = each test user's last train
item, targets = that user's test items, all items ranked by embedding dot product with
the user's train/valid items (the query among them) masked; user→item Recall@20 and
NDCG@20 (full ranking, seen items masked). Popularity as a floor.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ET = ("user", "rated", "item")

# overrides of the config (which itself has importance pooling, curriculum hard negatives,
# 2 layers and T=50, so it is the reference row of every ablation)
ABLATIONS = {
    "mean pooling": {"pooling": "mean"},
    "max pooling": {"pooling": "max"},
    "shared negatives only (no hard)": {"negatives": {"hard": {"max_per_query": 0}}},
    "1 layer": {"num_layers": 1},
    "T=10": {"walks": {"top_t": 10}},
    "T=20": {"walks": {"top_t": 20}},
}


def deep_update(base: dict, upd: dict) -> dict:
    out = dict(base)
    for k, v in upd.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def train_lightgcn(s, n_users, n_items, dim=64, layers=3, lr=5e-3, batch=2048, reg=1e-4, max_epochs=600, every=5,
                   patience=5, seed=0, log=print):
    """LightGCN + BPR (one uniform negative per train edge per epoch), early-stopped on
    valid Recall@20; returns (user [U, d], item [I, d]) of the best epoch."""
    from torch_geometric.nn.models import LightGCN

    from graphrec.train.evaluate import vectors_ranking_on_split

    torch.manual_seed(seed)
    rel = s.train.relation(ET)
    u, i = rel.coo()
    u, i = torch.from_numpy(u), torch.from_numpy(np.asarray(i, dtype=np.int64))
    edge_index = torch.cat([torch.stack([u, i + n_users]), torch.stack([i + n_users, u])], 1)
    # the same graph as a CSR adjacency: PyG's LGConv gives identical embeddings ~4x faster on CPU
    from torch_geometric.utils import to_torch_csr_tensor

    edge_index = to_torch_csr_tensor(edge_index.flip(0), size=(n_users + n_items, n_users + n_items))
    model = LightGCN(n_users + n_items, dim, layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    best, best_emb, bad, t0 = -1.0, None, 0, time.perf_counter()
    for epoch in range(max_epochs):
        perm = torch.randperm(u.shape[0], generator=g)
        for lo in range(0, u.shape[0], batch):
            idx = perm[lo : lo + batch]
            neg = torch.randint(0, n_items, (idx.shape[0],), generator=g)
            emb = model.get_embedding(edge_index)
            eu, ep, en = emb[u[idx]], emb[i[idx] + n_users], emb[neg + n_users]
            pos_rank, neg_rank = (eu * ep).sum(-1), (eu * en).sum(-1)
            node_id = torch.cat([u[idx], i[idx] + n_users, neg + n_users])
            loss = model.recommendation_loss(pos_rank, neg_rank, node_id=node_id, lambda_reg=reg)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if (epoch + 1) % every == 0:
            with torch.no_grad():
                emb = model.get_embedding(edge_index)
            r = vectors_ranking_on_split(emb[:n_users], emb[n_users:], s, "valid", ks=(20,))["recall@20"]
            log(f"  lightgcn epoch {epoch + 1}: loss {float(loss.detach()):.4f}, valid R@20 {r:.4f} ({time.perf_counter() - t0:.0f}s)")
            if r > best:
                best, best_emb, bad = r, emb.clone(), 0
            else:
                bad += 1
                if bad >= patience:
                    break
    return best_emb[:n_users], best_emb[n_users:], epoch + 1


def evaluate(s, users, items):
    from graphrec.train.evaluate import item_to_item_on_split, vectors_ranking_on_split

    out = {}
    for part in ("valid", "test"):
        ii = item_to_item_on_split(items, s, part, ks=(10,))
        ui = vectors_ranking_on_split(users, items, s, part, ks=(20,))
        out[part] = {"i2i_hr@10": ii["hit@10"], "i2i_mrr": ii["mrr"], "u2i_recall@20": ui["recall@20"],
                     "u2i_ndcg@20": ui["ndcg@20"]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--config", default=str(ROOT / "configs" / "pinsage-ml100k.yaml"))
    ap.add_argument("--ablations", action="store_true", help="also train the ablation variants")
    ap.add_argument("--variants", help="JSON file {name: config overrides} to train as well")
    ap.add_argument("--only", nargs="*", help="run only these variant names ('config' = the config as is)")
    ap.add_argument("--skip-lightgcn", action="store_true")
    ap.add_argument("--lightgcn-grid", type=lambda t: tuple(float(x) for x in t.split(",")), nargs="+",
                    default=[(5e-3, 1e-4), (1e-2, 1e-4), (5e-3, 1e-3)], help="LR,L2 pairs to try")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import yaml

    from graphrec.eval import chronological_split, load_split
    from graphrec.graph import build_graph, load_schema
    from graphrec.train.config import PinSageConfig, parse_config
    from graphrec.train.pinsage import PinSageRun, fit_pinsage

    work = Path(tempfile.mkdtemp(prefix="pinsage-ml100k-"))
    g = build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), work / "g", data_dir=args.data, progress=False)
    chronological_split(g, ET, fractions=(0.8, 0.1, 0.1), out=work / "split")
    s = load_split(work / "split")
    rel = s.train.relation(ET)
    n_users, n_items = rel.num_src, rel.num_dst
    rows = []

    def emit(row):
        rows.append(row)
        t = row["test"]
        print(json.dumps({"model": row["model"], "valid": row["valid"], "test": t, "seconds": row.get("seconds")}), flush=True)

    pop = np.bincount(np.asarray(rel.indices), minlength=n_items).astype(np.float32)
    # popularity: v_i = [1, pop(i)]: a query item q (pop(q) >= 1, it was rated in train)
    # scores 1 + pop(q)·pop(i) and a user [0, 1] scores pop(i): both rank by popularity
    pop_items = np.stack([np.ones(n_items, np.float32), pop], 1)
    pop_users = np.tile(np.array([[0.0, 1.0]], np.float32), (n_users, 1))

    from graphrec.train.evaluate import item_to_item_on_split, vectors_ranking_on_split

    def pop_eval(part):
        ii = item_to_item_on_split(pop_items, s, part, ks=(10,))
        ui = vectors_ranking_on_split(pop_users, pop_items, s, part, ks=(20,))
        return {"i2i_hr@10": ii["hit@10"], "i2i_mrr": ii["mrr"], "u2i_recall@20": ui["recall@20"], "u2i_ndcg@20": ui["ndcg@20"]}

    emit({"model": "popularity", "valid": pop_eval("valid"), "test": pop_eval("test")})

    if not args.skip_lightgcn:
        # trained to convergence (early stopping on valid R@20) for each (lr, L2) of a
        # small grid; the valid pick is reported
        best = None
        for lr, reg in args.lightgcn_grid:
            t0 = time.perf_counter()
            uu, ii, epochs = train_lightgcn(s, n_users, n_items, lr=lr, reg=reg, log=lambda m: None)
            res = evaluate(s, uu, ii)
            row = {"model": f"LightGCN (PyG, BPR, d64, 3 layers, lr {lr:g}, L2 {reg:g}, {epochs} epochs)", **res,
                   "seconds": time.perf_counter() - t0}
            print(json.dumps(row), flush=True)
            if best is None or res["valid"]["u2i_recall@20"] > best["valid"]["u2i_recall@20"]:
                best = row
        emit({**best, "model": best["model"] + " [valid pick]"})

    base = yaml.safe_load(Path(args.config).read_text())
    variants = {"config": {}}
    if args.ablations:
        variants.update(ABLATIONS)
    if args.variants:
        variants.update(json.loads(Path(args.variants).read_text()))
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}
    for name, upd in variants.items():
        cfg = parse_config(deep_update(base, {**upd, "threads": args.threads}), PinSageConfig)
        t0 = time.perf_counter()
        out = work / f"run-{len(rows)}"
        fit_pinsage(cfg, s.path / "train", out, use_ray=False, overwrite=True)
        r = PinSageRun(out)
        emit({"model": f"PinSage: {name}", "overrides": upd, **evaluate(s, r.user_vectors, r.item_vectors),
              "seconds": time.perf_counter() - t0, "epochs": r.info["summary"]["epochs_run"]})

    print("\n| model | valid i2i HR@10 | test i2i HR@10 | test i2i MRR | valid u2i R@20 | test u2i R@20 | test u2i NDCG@20 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        v, t = r["valid"], r["test"]
        print(f"| {r['model']} | {v['i2i_hr@10']:.4f} | {t['i2i_hr@10']:.4f} | {t['i2i_mrr']:.4f} | "
              f"{v['u2i_recall@20']:.4f} | {t['u2i_recall@20']:.4f} | {t['u2i_ndcg@20']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
