"""Entry point for `ray job submit`: the whole pipeline (`graphrec run`) on a Ray cluster.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/run_pipeline.py configs/quickstart.yaml --out /shared/quickstart

Inside a submitted job Ray is already running: the script connects to it
(``address="auto"``); training runs on Ray Train workers and inference shards as Ray
tasks, exactly as ``graphrec run`` does on local Ray. ``--out`` must be on storage
every node can read and write (graph store, runs and inference layers are memory-mapped
by the workers). ``--local`` starts Ray embedded instead.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the job's working dir, if graphrec is not installed

from graphrec.errors import GraphrecError  # noqa: E402
from graphrec.pipeline import run_job  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--out", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--local", action="store_true", help="start Ray embedded instead of joining the cluster")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        s = run_job(args.config, args.out, overwrite=args.overwrite, progress=False,
                    address=None if args.local else "auto")
    except GraphrecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done in {s['seconds']:.0f}s; report: {(Path(args.out) if args.out else Path('out') / s['name']) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
