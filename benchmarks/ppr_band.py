"""Do PinSage's Monte-Carlo hard negatives come from the PPR band on a 1M-item catalogue?

    python benchmarks/ppr_band.py GRAPH [--ranks 2000 5000] [--mc-walks 2000] [--mc-length 10]
        [--queries 8] [--per-query 50] [--batch 512]

``GRAPH``: a store of ``graphrec generate pinterest`` (e.g. 1M pins; metapaths
``pin-saved_by-user-saves-pin`` and ``pin-in_board-board-has_pin-pin``, restart 0.3).

1. Exact PPR (power iteration, α = 0.3, 30 rounds, over the metapath transition's sparse
   factors) of ``--queries`` random pins: every item's exact rank.
2. ``PPRHardNegatives(method="montecarlo", ranks=...)`` draws ``--per-query`` negatives
   per query; their exact ranks are reported (fraction inside the band, inside half / twice
   its bounds, median), with the band coverage of the walks.
3. The same for the fraction band of the shipped configs (``band: [0.05, 0.2]``, 200 walks
   × 10): what the walks can and cannot rank at this size.
4. One training-size batch (``--batch`` queries × 3 negatives): seconds and the process's
   peak RSS (memory is ``O(batch × walks × length)``, not ``O(batch × N)``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PUP = ["pin:saved_by:user", "user:saves:pin"]
PBP = ["pin:in_board:board", "board:has_pin:pin"]


def report(name, hard, queries, exact_rank, per_query, rng):
    t0 = time.perf_counter()
    neg = hard.sample(queries, np.full(queries.shape[0], -1), per_query, rng)
    dt = time.perf_counter() - t0
    r = exact_rank[np.arange(queries.shape[0])[:, None], neg]
    cov = hard.coverage(queries, np.random.default_rng(5))
    inside = ((r >= hard.lo) & (r < hard.hi)).mean()
    loose = ((r >= hard.lo // 2) & (r < 2 * hard.hi)).mean()
    print(f"| {name} | [{hard.lo:,}, {hard.hi:,}) | {hard.mc_walks} x {hard.mc_length} | {cov:.2f} | {inside:.2f} | "
          f"{loose:.2f} | {int(np.median(r)):,} | {dt / queries.shape[0]:.3f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graph")
    ap.add_argument("--ranks", type=int, nargs=2, default=[2000, 5000])
    ap.add_argument("--mc-walks", type=int, default=2000)
    ap.add_argument("--mc-length", type=int, default=10)
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--per-query", type=int, default=50)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    from graphrec.graph import GraphStore
    from graphrec.sampling import PPRHardNegatives, RandomWalkSampler

    store = GraphStore(args.graph)
    sampler = RandomWalkSampler(store, [(PUP, 1.0), (PBP, 1.0)], restart_prob=0.3)
    n = sampler.num_nodes
    rng = np.random.default_rng(0)
    queries = np.sort(rng.choice(n, size=args.queries, replace=False))
    t0 = time.perf_counter()
    exact = PPRHardNegatives(store, sampler, alpha=0.3, method="power")
    scores = exact.ppr(queries, np.float64)
    scores[np.arange(queries.shape[0]), queries] = np.inf
    order = np.argsort(-scores, axis=1, kind="stable")
    exact_rank = np.empty_like(order)
    exact_rank[np.arange(queries.shape[0])[:, None], order] = np.arange(n)[None, :]
    print(f"{n:,} items; exact PPR of {queries.shape[0]} queries in {time.perf_counter() - t0:.1f}s; items with "
          f"PPR > 0 per query: {int(np.median((scores > 0).sum(1))):,} (median)")
    print("\n| negatives | band (ranks) | walks | band coverage | exact rank in band | in [lo/2, 2 hi) | median exact "
          "rank | s / query |\n|---|---|---|---|---|---|---|---|")
    mc = PPRHardNegatives(store, sampler, ranks=tuple(args.ranks), method="montecarlo", mc_walks=args.mc_walks,
                          mc_length=args.mc_length)
    report("Monte-Carlo, absolute ranks", mc, queries, exact_rank, args.per_query, np.random.default_rng(1))
    frac = PPRHardNegatives(store, sampler, band=(0.05, 0.2), method="montecarlo", mc_walks=200, mc_length=10)
    report("Monte-Carlo, fraction band (0.05, 0.2)", frac, queries, exact_rank, args.per_query,
           np.random.default_rng(2))
    batch = rng.choice(n, size=args.batch, replace=False)
    t0 = time.perf_counter()
    mc.sample(batch, (batch + 1) % n, 3, np.random.default_rng(3))
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\none batch of {args.batch} queries x 3 negatives ({args.mc_walks} x {args.mc_length} walks each): "
          f"{dt:.1f}s; peak RSS of the process {rss:.2f} GiB (the exact PPR above included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
