"""Where PinSage's training time per minibatch goes, against the catalogue size (issue 15:
why `benchmarks/pinsage_scale.py` measured 2.5× fewer pairs/s at 1M pins than at 100k
for the same saves).

    python benchmarks/pinsage_batch_work.py GRAPH [GRAPH ...] [--batches 30]

For each graph, in one process and one thread (no loader worker, so nothing overlaps):
the fixed importance neighbourhoods and co-engagement pairs of
``configs/pinsage-pinterest.yaml`` (one partner per save, as pinsage_scale.py), then the
first ``--batches`` minibatches of epoch 0 — each built (:class:`PinSageBatches`: the
two-hop re-indexed subgraph and its features) and trained on (forward, backward and
optimizer step of the same model and optimizers as ``graphrec train pinsage``). Reported
per graph, averaged over the batches: distinct items in the batch's targets and at layer
0 (the nodes whose inputs are gathered and convolved), seconds to build, seconds to step,
and the pairs/s these imply.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def measure(graph: str, batches: int) -> dict:
    import yaml

    from graphrec.graph import GraphStore
    from graphrec.graph.store import parse_edge_type
    from graphrec.run.config import PinSageConfig, parse_config
    from graphrec.run.directory import fixed_neighborhoods, pinsage_features, pinsage_model, pinsage_sampler
    from graphrec.sampling import PinSageBatches
    from graphrec.train.pinsage import PinSageLoss, make_optimizers, positive_pairs

    store = GraphStore(graph)
    raw = yaml.safe_load((ROOT / "configs" / "pinsage-pinterest.yaml").read_text())
    raw.update(epochs=1, holdout_fraction=0.002, loader_workers=0,
               positives={"window": 3, "sampling": "per_interaction", "per_interaction": 1})
    cfg = parse_config(raw, PinSageConfig)
    rel = store.relation(parse_edge_type(cfg.interactions))
    n_items = store.num_nodes(cfg.item_type)
    ts = rel.edge_attr("timestamp") if "timestamp" in rel.attr_names else None
    pairs_of_epoch, _, _ = positive_pairs(rel, ts, cfg)
    t = time.perf_counter()
    nbh = fixed_neighborhoods(pinsage_sampler(store, cfg), cfg)
    t_nbh = time.perf_counter() - t
    features = pinsage_features(store, cfg)
    query, pos = pairs_of_epoch(0)
    data = PinSageBatches(query, pos, n_items, cfg.batch_size, cfg.num_layers, nbh, features,
                          cfg.negatives.shared, None, 0, 0, seed=cfg.seed)
    model = pinsage_model(cfg, n_items, features.spec, sparse_ids=True)
    loss_module = PinSageLoss(model, cfg.margin)
    opts = make_optimizers(loss_module, cfg)
    rows = []
    it = iter(data)
    for _ in range(batches + 2):  # the first two warm up (allocations, page faults)
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = loss_module(batch)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
        t2 = time.perf_counter()
        rows.append((batch.num_targets, int(batch.nodes.shape[0]), t1 - t0, t2 - t1))
    r = np.array(rows[2:], dtype=np.float64)
    return {"pins": n_items, "pairs": int(query.shape[0]), "neighbourhoods_s": t_nbh, "targets": r[:, 0].mean(),
            "layer0": r[:, 1].mean(), "build_s": r[:, 2].mean(), "step_s": r[:, 3].mean(),
            "pairs_per_s": cfg.batch_size / (r[:, 2].mean() + r[:, 3].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| pins | targets per batch | layer-0 items per batch | build s | step s | pairs/s (build + step) |\n"
          "|---|---|---|---|---|---|")
    for g in args.graphs:
        m = measure(g, args.batches)
        print(f"| {m['pins']:,} | {m['targets']:,.0f} | {m['layer0']:,.0f} | {m['build_s']:.3f} | {m['step_s']:.3f} | "
              f"{m['pairs_per_s']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
