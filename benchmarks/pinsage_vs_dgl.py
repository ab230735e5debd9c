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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GRAPHREC_DATA", str(ROOT.parent / "shared" / "datasets" / "ml-100k")))
    ap.add_argument("--saves", type=int, default=2_000_000, help="synthetic graph's saves (0: ML-100K only)")
    ap.add_argument("--seeds", type=int, default=20_000, help="seed items of the synthetic graph (ML-100K: every item)")
    ap.add_argument("--num-walks", type=int, default=100)
    ap.add_argument("--walk-length", type=int, default=2)
    ap.add_argument("--top-t", type=int, default=10)
    ap.add_argument("--restart", type=float, default=0.5, help="the shipped configs' restart_prob")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agreement-walks", type=int, default=5000, help="walks per seed of the agreement check")
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from graphrec.datasets import PinterestConfig, generate_pinterest
    from graphrec.graph import GraphStore, build_graph, load_schema

    work = Path(args.work or tempfile.mkdtemp(prefix="pinsage-dgl-"))
    rows = []
    if (Path(args.data) / "ml-100k.inter").is_file():
        ml = build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), work / "ml", data_dir=args.data,
                         progress=False, overwrite=True)
        rows += compare("ML-100K", ml, "item", "user", ["item:rated_by:user", "user:rated:item"],
                        np.arange(ml.num_nodes("item")), args)
    else:
        print(f"ML-100K not found at {args.data}: skipped")
    if args.saves > 0:
        n = args.saves
        graph = work / f"pins-{n}"
        if not (graph / "manifest.json").is_file():
            cfg = PinterestConfig(users=max(1000, n // 20), pins=max(2000, n // 10), boards=max(100, n // 200),
                                  authors=max(50, n // 500), saves=n, clusters=100, seed=0)
            generate_pinterest(cfg, work / f"data-{n}", overwrite=True, progress=False)
            build_graph(load_schema(ROOT / "graphs" / "pinterest-synthetic.yaml"), graph, data_dir=work / f"data-{n}",
                        progress=False)
        store = GraphStore(graph)
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
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
