"""graphrec vs DGL 2.1.0 for PinSage, side by side in one run (issue 15, item 6).

    python benchmarks/pinsage_vs_dgl.py [--saves 2000000] [--seeds 20000] [--repeats 3] [--json FILE]

Needs the ``dgl`` extra (``make setup`` installs it; DGL is imported through
:mod:`graphrec.graph.dgl_compat`).

**Importance neighbourhoods** (what PinSage convolves over): for every seed item, walk
``num_walks`` metapath walks of ``walk_length`` item→user→item rounds and keep the
``top_t`` most visited items with their normalised visit counts.

* graphrec: :func:`graphrec.sampling.importance_neighbors` over
  :class:`graphrec.sampling.RandomWalkSampler` (vectorised numpy gathers on the store's
  memory-mapped CSR), all seeds at once in chunks of 4,096;
* DGL: ``dgl.sampling.PinSAGESampler(g, item, user, num_traversals=walk_length,
  termination_prob=p, num_random_walks=num_walks, num_neighbors=top_t)`` on
  ``store.to_dgl()`` — DGL's C++ random walks and top-k — called on the same seeds in
  the same chunks.

Same graph, seeds, walks per seed, walk length and T. Two settings: ``restart 0`` (both
walk exactly ``num_walks × walk_length`` rounds per seed: the same computation, so the
neighbourhoods must agree — the script prints the mean overlap of the two top-T sets,
measured with ``--agreement-walks`` walks where the estimates have converged)
and the shipped ``configs/pinsage-ml100k.yaml`` settings (``restart_prob 0.5``). There
the semantics differ: graphrec jumps back to the seed and keeps walking (every walk
makes ``walk_length`` rounds), DGL's ``termination_prob`` ends the walk (about half the
hops), so that row's ratio favours DGL. Speed: neighbourhoods per **CPU-second**
(``time.process_time`` of this process: DGL's OpenMP threads count too), best of
``--repeats``, one thread each (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``).

Graphs: ML-100K (``graphs/movielens-100k.yaml``) and a synthetic Pinterest graph of
``--saves`` saves (``graphs/pinterest-synthetic.yaml``, pin→user→pin), when ``--saves``
> 0.

**Training** (``--training``): ML-100K, chronological 80/10/10 split of
``user:rated:item`` (as ``benchmarks/pinsage_ml100k.py``), both trained on the train
graph in this process with one thread, evaluated by the same evaluator
(:func:`graphrec.train.evaluate.item_to_item_on_split`: each user's last train item as
the query, HitRate@10 of their held-out items):

* graphrec: ``configs/pinsage-ml100k.yaml`` (``loader_workers: 0``, ``threads: 1`` so that
  all the work is in this process's CPU time);
* DGL: the PinSAGE example of DGL's repository (``examples/pytorch/pinsage``: item→item
  pairs from one item→user→item walk step, uniform negatives, ``PinSAGESampler``
  neighbourhoods per layer with the pair's edges removed, ``to_block``, a linear
  projection of every item feature plus an item-id embedding, weighted SAGE convolutions
  with L2-normalised outputs, a dot-product scorer with item biases, the margin loss
  ``max(0, 1 + s_neg − s_pos)``, Adam) rewritten here against DGL 2.1 with its defaults
  (walk length 2, restart 0.5, 10 walks, 3 neighbours, 2 layers, batch 32) and graphrec's
  dim (64). Its learning rate is chosen on valid HR@10 from ``--dgl-lrs``; test is
  reported for the pick.

Speed: training pairs (positive pairs of a step, summed) per CPU-second of training
(``time.process_time``; graphrec: the epochs' own timer, which excludes its validation).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
CHUNK = 4096


def graphrec_neighborhoods(store, item: str, path: list[str], seeds: np.ndarray, walks: int, length: int, top_t: int,
                           restart: float, seed: int):
    from graphrec.sampling import RandomWalkSampler, importance_neighbors

    sampler = RandomWalkSampler(store, [(path, 1.0)], restart_prob=restart)
    t0 = time.process_time()
    nb = importance_neighbors(sampler, seeds, top_t, walks, length, np.random.default_rng(seed), chunk_seeds=CHUNK)
    return time.process_time() - t0, nb.neighbors


def dgl_neighborhoods(g, item: str, other: str, seeds: np.ndarray, walks: int, length: int, top_t: int,
                      restart: float, seed: int):
    from graphrec.graph.dgl_compat import import_dgl

    dgl = import_dgl()
    dgl.seed(seed)
    sampler = dgl.sampling.PinSAGESampler(g, item, other, num_traversals=length, termination_prob=restart,
                                         num_random_walks=walks, num_neighbors=top_t)
    seeds_t = torch.from_numpy(seeds)
    t0 = time.process_time()
    blocks = [sampler(seeds_t[lo : lo + CHUNK]) for lo in range(0, seeds.shape[0], CHUNK)]
    cpu = time.process_time() - t0
    return cpu, blocks


def dgl_neighbor_sets(blocks, seeds: np.ndarray, top_t: int) -> list[set]:
    """Per seed, the ``top_t`` heaviest neighbours DGL kept (its block's edges neighbour ->
    seed, original ids, ``weights`` the visit counts), the seed itself dropped (graphrec
    excludes it; DGL does not)."""
    out = []
    for k, blk in enumerate(blocks):
        src, dst = (x.numpy() for x in blk.edges())
        w = blk.edata["weights"].numpy()
        for sd in seeds[k * CHUNK : (k + 1) * CHUNK]:
            m = (dst == sd) & (src != sd)
            order = np.lexsort((src[m], -w[m]))[:top_t]
            out.append(set(src[m][order].tolist()))
    return out


def overlap(ours: np.ndarray, theirs: list[set]) -> float:
    """Mean |A ∩ B| / |A ∪ B| of the per-seed neighbour sets (padding ignored)."""
    vals = []
    for x, sy in zip(ours, theirs, strict=True):
        sx = set(x[x >= 0].tolist())
        if sx or sy:
            vals.append(len(sx & sy) / len(sx | sy))
    return float(np.mean(vals)) if vals else float("nan")


def agreement(store, g, item: str, other: str, path: list[str], seeds: np.ndarray, top_t: int, walks: int,
              length: int) -> float:
    """``(graphrec vs DGL, graphrec vs graphrec with another seed)``: top-T overlaps with
    many walks (``walks``) and no restart. Both samplers estimate the same visit
    distribution, so graphrec-vs-DGL should match the overlap of two graphrec runs (the
    sampling noise of near-tied counts; at 100 walks a dense graph's top-T is mostly
    ties and noise)."""
    _, ours = graphrec_neighborhoods(store, item, path, seeds, walks, length, top_t, 0.0, 0)
    _, again = graphrec_neighborhoods(store, item, path, seeds, walks, length, top_t, 0.0, 1)
    _, blocks = dgl_neighborhoods(g, item, other, seeds, walks, length, top_t + 1, 0.0, 0)
    return overlap(ours, dgl_neighbor_sets(blocks, seeds, top_t)), overlap(ours, [set(x[x >= 0].tolist()) for x in again])


def compare(name: str, store, item: str, other: str, path: list[str], seeds: np.ndarray, args) -> list[dict]:
    torch.set_num_threads(1)
    g = store.to_dgl(features=False)
    # DGL's PinSAGESampler walks the one relation item -> other and back: keep only those two
    keep = [et for et in g.canonical_etypes if {et[0], et[2]} == {item, other}]
    g = g.edge_type_subgraph(keep)
    rows = []
    for restart in (0.0, args.restart):
        best = {"graphrec": (np.inf, None), "dgl": (np.inf, None)}
        for rep in range(args.repeats):
            t, nb = graphrec_neighborhoods(store, item, path, seeds, args.num_walks, args.walk_length, args.top_t,
                                           restart, rep)
            best["graphrec"] = min(best["graphrec"], (t, nb), key=lambda x: x[0])
            t, nb = dgl_neighborhoods(g, item, other, seeds, args.num_walks, args.walk_length, args.top_t, restart,
                                      rep)
            best["dgl"] = min(best["dgl"], (t, nb), key=lambda x: x[0])
        ours, theirs = best["graphrec"][0], best["dgl"][0]
        row = {"graph": name, "edges": int(sum(store.num_edges(et) for et in store.edge_types)),
               "seeds": int(seeds.shape[0]), "restart": restart, "num_walks": args.num_walks,
               "walk_length": args.walk_length, "top_t": args.top_t,
               "graphrec_per_cpu_s": seeds.shape[0] / ours, "dgl_per_cpu_s": seeds.shape[0] / theirs,
               "ratio": theirs / ours}
        rows.append(row)
        print(f"{name} restart {restart}: graphrec {row['graphrec_per_cpu_s']:,.0f} neighbourhoods/CPU-s, DGL "
              f"{row['dgl_per_cpu_s']:,.0f} ({row['ratio']:.1f}x)", flush=True)
    check = seeds[:: max(1, seeds.shape[0] // 200)][:200]
    agree, noise = agreement(store, g, item, other, path, check, args.top_t, args.agreement_walks, args.walk_length)
    print(f"{name}: top-{args.top_t} overlap with {args.agreement_walks} walks from {check.shape[0]} seeds "
          f"(restart 0): graphrec vs DGL {agree:.3f}, graphrec vs graphrec (another seed) {noise:.3f}", flush=True)
    for row in rows:
        row["top_t_overlap_converged"], row["top_t_overlap_graphrec_reseeded"] = agree, noise
    return rows


# ---------------------------------------------------------------- training: DGL's PinSAGE example


def _dgl_example(dgl, g, item: str, user: str, dim: int, layers: int, walk_length: int, restart: float, walks: int,
                 neighbors: int):
    """The PinSAGE example's model and samplers on ``g`` (a user/item heterograph whose
    item nodes carry float and int64 features); returns ``(model, sample_pairs,
    sample_blocks)``."""
    from torch import nn
    from torch.nn import functional as F

    fn = dgl.function
    u2i = next(et for et in g.canonical_etypes if et[0] == user and et[2] == item)[1]
    i2u = next(et for et in g.canonical_etypes if et[0] == item and et[2] == user)[1]

    class Projector(nn.Module):  # every item feature projected to dim, summed
        def __init__(self):
            super().__init__()
            self.inputs = nn.ModuleDict()
            for name, x in g.nodes[item].data.items():
                if x.dtype == torch.int64:
                    self.inputs[name] = nn.Embedding(int(x.max()) + 2, dim)
                    nn.init.xavier_uniform_(self.inputs[name].weight)
                else:
                    self.inputs[name] = nn.Linear(x.shape[1] if x.dim() == 2 else 1, dim)
                    nn.init.xavier_uniform_(self.inputs[name].weight)
                    nn.init.zeros_(self.inputs[name].bias)

        def forward(self, ndata):
            out = 0
            for name, m in self.inputs.items():
                x = ndata[name]
                out = out + m(x if x.dtype == torch.int64 else (x if x.dim() == 2 else x[:, None]))
            return out

    class WeightedSAGEConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.Q, self.W = nn.Linear(dim, dim), nn.Linear(2 * dim, dim)
            self.dropout = nn.Dropout(0.5)
            gain = nn.init.calculate_gain("relu")
            for lin in (self.Q, self.W):
                nn.init.xavier_uniform_(lin.weight, gain=gain)
                nn.init.zeros_(lin.bias)

        def forward(self, block, h_src, h_dst, w):
            with block.local_scope():
                block.srcdata["n"] = F.relu(self.Q(self.dropout(h_src)))
                block.edata["w"] = w.float()
                block.update_all(fn.u_mul_e("n", "w", "m"), fn.sum("m", "n"))
                block.update_all(fn.copy_e("w", "m"), fn.sum("m", "ws"))
                n, ws = block.dstdata["n"], block.dstdata["ws"].unsqueeze(1).clamp(min=1)
                z = F.relu(self.W(self.dropout(torch.cat([n / ws, h_dst], 1))))
                norm = z.norm(2, 1, keepdim=True)
                return z / torch.where(norm == 0, torch.ones_like(norm), norm)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = Projector()
            self.convs = nn.ModuleList(WeightedSAGEConv() for _ in range(layers))
            self.bias = nn.Parameter(torch.zeros(g.num_nodes(item)))

        def embed(self, blocks):
            h = self.proj(blocks[0].srcdata)
            for conv, block in zip(self.convs, blocks, strict=True):
                h = conv(block, h, h[: block.num_dst_nodes()], block.edata["weights"])
            return self.proj(blocks[-1].dstdata) + h

        def forward(self, pos_graph, neg_graph, blocks):
            h = self.embed(blocks)

            def score(pair_graph):
                with pair_graph.local_scope():
                    pair_graph.ndata["h"] = h
                    pair_graph.apply_edges(fn.u_dot_v("h", "h", "s"))
                    src, dst = pair_graph.edges()
                    nid = pair_graph.ndata[dgl.NID]
                    return pair_graph.edata["s"].squeeze(-1) + self.bias[nid[src]] + self.bias[nid[dst]]

            return (score(neg_graph) - score(pos_graph) + 1).clamp(min=0).mean()

    samplers = [dgl.sampling.PinSAGESampler(g, item, user, walk_length, restart, walks, neighbors)
                for _ in range(layers)]

    def with_features(blocks):
        for data in (blocks[0].srcdata, blocks[-1].dstdata):
            for name, x in g.nodes[item].data.items():
                data[name] = x[data[dgl.NID]]
        return blocks

    def sample_blocks(seeds, heads=None, tails=None, neg_tails=None):
        blocks = []
        for sampler in samplers:
            frontier = sampler(seeds)
            if heads is not None:  # the pair's own edges are not neighbours
                eids = frontier.edge_ids(torch.cat([heads, heads]), torch.cat([tails, neg_tails]), return_uv=True)[2]
                if len(eids):
                    frontier = dgl.remove_edges(frontier, eids)
            block = dgl.to_block(frontier, seeds)
            block.edata["weights"] = frontier.edata["weights"][block.edata[dgl.EID]]
            seeds = block.srcdata[dgl.NID]
            blocks.insert(0, block)
        return with_features(blocks)

    def sample_pairs(batch_size: int):
        n = g.num_nodes(item)
        heads = torch.randint(0, n, (batch_size,))
        tails = dgl.sampling.random_walk(g, heads, metapath=[i2u, u2i])[0][:, 2]
        negs = torch.randint(0, n, (batch_size,))
        keep = tails != -1
        heads, tails, negs = heads[keep], tails[keep], negs[keep]
        pos = dgl.graph((heads, tails), num_nodes=n)
        neg = dgl.graph((heads, negs), num_nodes=n)
        pos, neg = dgl.compact_graphs([pos, neg])
        return pos, neg, sample_blocks(pos.ndata[dgl.NID], heads, tails, negs)

    return Model(), sample_pairs, sample_blocks


def dgl_item_features(store, item: str) -> dict:
    """The store's item features as the DGL example expects them: categorical and the
    (bucketed) numeric ones as int64 codes, token bags as row-normalised float ``[N, V]``,
    plus the item id (the example's id embedding)."""
    out = {}
    n = store.num_nodes(item)
    for name in store.feature_names(item):
        feat = store.feature(item, name)
        if feat.kind == "categorical":
            out[name] = torch.from_numpy(np.asarray(feat.codes, dtype=np.int64))
        elif feat.kind == "numeric":  # e.g. release year: its distinct values as categories, missing its own
            v = np.asarray(feat.values, dtype=np.float64)
            _, codes = np.unique(np.nan_to_num(v, nan=-1.0), return_inverse=True)
            out[name] = torch.from_numpy(codes.astype(np.int64))
        else:
            offsets = np.asarray(feat.offsets)
            bag = np.zeros((n, feat.num_categories), dtype=np.float32)
            rows = np.repeat(np.arange(n), np.diff(offsets))
            np.add.at(bag, (rows, np.asarray(feat.codes, dtype=np.int64)), 1.0)
            out[name] = torch.from_numpy(bag / np.maximum(bag.sum(1, keepdims=True), 1.0))
    out["id"] = torch.arange(n)
    return out


def train_dgl_example(split, args, lr: float, seed: int) -> dict:
    from graphrec.graph.dgl_compat import import_dgl
    from graphrec.train.evaluate import item_to_item_on_split

    dgl = import_dgl()
    torch.manual_seed(seed)
    dgl.seed(seed)
    full = split.train.to_dgl(features=False)
    g = full.edge_type_subgraph([et for et in full.canonical_etypes if {et[0], et[2]} == {"user", "item"}])
    for name, x in dgl_item_features(split.train, "item").items():
        g.nodes["item"].data[name] = x
    model, sample_pairs, sample_blocks = _dgl_example(dgl, g, "item", "user", args.dim, 2, 2, 0.5, 10, 3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    pairs, t0 = 0, time.process_time()
    model.train()
    for _ in range(args.dgl_batches):
        pos, neg, blocks = sample_pairs(32)
        loss = model(pos, neg, blocks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pairs += pos.num_edges()
    cpu = time.process_time() - t0
    model.eval()
    with torch.no_grad():
        items = torch.arange(g.num_nodes("item"))
        h = torch.cat([model.embed(sample_blocks(b)) for b in items.split(256)]).numpy()
    return {"lr": lr, "pairs": pairs, "train_cpu_s": cpu, "pairs_per_cpu_s": pairs / cpu,
            **{f"{part}_hr@10": item_to_item_on_split(h, split, part, ks=(10,))["hit@10"] for part in ("valid", "test")}}


def train_graphrec(split, work: Path, seed: int) -> dict:
    import yaml

    from graphrec.run.config import PinSageConfig, parse_config
    from graphrec.run.directory import open_run
    from graphrec.train.evaluate import item_to_item_on_split
    from graphrec.train.runs import fit

    base = yaml.safe_load((ROOT / "configs" / "pinsage-ml100k.yaml").read_text())
    cfg = parse_config({**base, "seed": seed, "threads": 1, "loader_workers": 0}, PinSageConfig)
    t0 = time.process_time()
    info = fit(cfg, split.train.path, work / "graphrec-run", use_ray=False, overwrite=True)
    total_cpu = time.process_time() - t0
    hist = info["summary"]["history"]
    pairs = sum(h["pairs"] for h in hist)
    seconds = sum(h["seconds"] for h in hist)
    items = open_run(work / "graphrec-run").item_vectors
    return {"pairs": pairs, "train_s": seconds, "pairs_per_cpu_s": pairs / seconds, "fit_cpu_s": total_cpu,
            **{f"{part}_hr@10": item_to_item_on_split(items, split, part, ks=(10,))["hit@10"] for part in ("valid", "test")}}


def training(args, work: Path) -> dict | None:
    from graphrec.datasets import ml100k_missing
    from graphrec.eval import chronological_split, load_split
    from graphrec.graph import build_graph, load_schema

    if ml100k_missing(args.data):
        print(f"training comparison skipped: ML-100K not found at {args.data}")
        return None
    torch.set_num_threads(1)
    g = build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), work / "ml-train", data_dir=args.data,
                    progress=False, overwrite=True)
    chronological_split(g, ("user", "rated", "item"), fractions=(0.8, 0.1, 0.1), out=work / "ml-split", overwrite=True)
    split = load_split(work / "ml-split")
    ours = train_graphrec(split, work, args.seed)
    print(f"graphrec PinSage: {ours['pairs_per_cpu_s']:,.0f} pairs/CPU-s, valid HR@10 {ours['valid_hr@10']:.4f}, "
          f"test HR@10 {ours['test_hr@10']:.4f}", flush=True)
    theirs = []
    for lr in args.dgl_lrs:
        r = train_dgl_example(split, args, lr, args.seed)
        theirs.append(r)
        print(f"DGL example lr {lr:g}: {r['pairs_per_cpu_s']:,.0f} pairs/CPU-s, valid HR@10 {r['valid_hr@10']:.4f}",
              flush=True)
    pick = max(theirs, key=lambda r: r["valid_hr@10"])
    ratio = ours["pairs_per_cpu_s"] / pick["pairs_per_cpu_s"]
    print(f"\n| ML-100K, seed {args.seed} | pairs trained | pairs / CPU-s | valid i2i HR@10 | test i2i HR@10 |")
    print("|---|---|---|---|---|")
    print(f"| graphrec PinSage (`configs/pinsage-ml100k.yaml`) | {ours['pairs']:,} | {ours['pairs_per_cpu_s']:,.0f} | "
          f"{ours['valid_hr@10']:.4f} | {ours['test_hr@10']:.4f} |")
    for r in theirs:
        mark = " [valid pick]" if r is pick else ""
        print(f"| DGL PinSAGE example, lr {r['lr']:g}{mark} | {r['pairs']:,} | {r['pairs_per_cpu_s']:,.0f} | "
              f"{r['valid_hr@10']:.4f} | {r['test_hr@10']:.4f} |")
    print(f"graphrec / DGL example (valid pick): {ratio:.1f}x pairs per CPU-second")
    return {"graphrec": ours, "dgl_example": theirs, "dgl_pick_lr": pick["lr"], "ratio": ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--saves", type=int, default=2_000_000, help="synthetic graph's saves (0: ML-100K only)")
    ap.add_argument("--seeds", type=int, default=20_000, help="seed items per graph (ML-100K: every item, cycled)")
    ap.add_argument("--num-walks", type=int, default=100)
    ap.add_argument("--walk-length", type=int, default=2)
    ap.add_argument("--top-t", type=int, default=10)
    ap.add_argument("--restart", type=float, default=0.5, help="the shipped configs' restart_prob")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agreement-walks", type=int, default=5000, help="walks per seed of the agreement check")
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--training", action="store_true", help="also the training comparison on ML-100K")
    ap.add_argument("--sampler", action=argparse.BooleanOptionalAction, default=True,
                    help="the neighbourhood comparison (--no-sampler: training only)")
    ap.add_argument("--dim", type=int, default=64, help="the DGL example's hidden dims (graphrec's config: 64)")
    ap.add_argument("--dgl-batches", type=int, default=20_000, help="the DGL example's batches (its default)")
    ap.add_argument("--dgl-lrs", type=float, nargs="+", default=[3e-5, 3e-4, 3e-3],
                    help="the DGL example's learning rates tried (3e-5: its default); the pick by valid HR@10")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from graphrec.graph import build_graph, load_schema

    work = Path(args.work or tempfile.mkdtemp(prefix="pinsage-dgl-"))
    rows = []
    result = {"training": training(args, work) if args.training else None}
    if not args.sampler:
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return
    if (Path(args.data) / "ml-100k.inter").is_file():
        ml = build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), work / "ml", data_dir=args.data,
                         progress=False, overwrite=True)
        # every item, cycled to --seeds seeds: one pass over 1,682 items is ~10 ms, too short to time
        rows += compare("ML-100K", ml, "item", "user", ["item:rated_by:user", "user:rated:item"],
                        np.resize(np.arange(ml.num_nodes("item")), max(args.seeds, ml.num_nodes("item"))), args)
    else:
        print(f"ML-100K not found at {args.data}: skipped")
    if args.saves > 0:
        from inference import graph as synthetic_pins  # benchmarks/inference.py: generated once per --work

        n = args.saves
        store = synthetic_pins(work, n)
        seeds = np.sort(np.random.default_rng(0).choice(store.num_nodes("pin"), min(args.seeds, store.num_nodes("pin")),
                                                        replace=False))
        rows += compare(f"synthetic pins ({n:,} saves)", store, "pin", "user", ["pin:saved_by:user", "user:saves:pin"],
                        seeds, args)
    print("\n| graph | edges | seeds | restart | graphrec neighbourhoods/CPU-s | DGL PinSAGESampler /CPU-s | graphrec / DGL "
          "| top-T overlap vs DGL / vs itself reseeded |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['graph']} | {r['edges']:,} | {r['seeds']:,} | {r['restart']} | {r['graphrec_per_cpu_s']:,.0f} | "
              f"{r['dgl_per_cpu_s']:,.0f} | {r['ratio']:.1f}× | {r['top_t_overlap_converged']:.3f} / "
              f"{r['top_t_overlap_graphrec_reseeded']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "neighbourhoods": rows}, indent=1))


if __name__ == "__main__":
    main()
