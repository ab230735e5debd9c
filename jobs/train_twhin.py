"""Entry point for `ray job submit`: TwHIN training on a Ray cluster.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train_twhin.py --config configs/twhin-ml100k.yaml \
        --graph /shared/ml100k-split/train --out /shared/runs/twhin-ml100k --workers 4

Inside a submitted job Ray is already running: the script connects to it
(``address="auto"``) and runs the same ``train_loop_per_worker`` as ``graphrec train
twhin`` on ``--workers`` Ray Train workers. The graph store and the run directory must be
on storage every node can read (the store is memory-mapped by each worker); without a
cluster (``--local``) Ray starts embedded, exactly like the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--graph", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--local", action="store_true", help="start Ray embedded instead of joining the job's cluster")
    args = ap.parse_args(argv)

    from graphrec.errors import GraphrecError
    from graphrec.train.config import load_config
    from graphrec.train.twhin import fit_twhin

    try:
        cfg = load_config(args.config)
        ray_update = {"address": None if args.local else "auto"}
        if args.workers is not None:
            ray_update["workers"] = args.workers
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update=ray_update)})
        info = fit_twhin(cfg, args.graph, args.out, use_ray=True, resume=args.resume, overwrite=args.overwrite)
    except GraphrecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in info["summary"].items() if k != "history"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
