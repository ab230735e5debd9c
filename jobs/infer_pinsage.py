"""Entry point for `ray job submit`: layer-wise PinSage inference on a Ray cluster.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/infer_pinsage.py --run /shared/runs/pinsage --out /shared/runs/pinsage/inference

Inside a submitted job Ray is already running: the script connects to it
(``address="auto"``) and runs every inference shard as a Ray task (one logical CPU
each), exactly as ``graphrec infer --address auto``. The run directory and ``--out`` must
be on storage every node can read and write (shards write rows of memory-mapped arrays
there); re-submitting after a failure resumes from the finished shards. ``--local``
starts Ray embedded instead.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the job's working dir, if graphrec is not installed

from graphrec.errors import GraphrecError  # noqa: E402
from graphrec.infer.layerwise import infer_pinsage  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished PinSage run directory")
    p.add_argument("--out", default=None, help="inference directory [default: RUN/inference]")
    p.add_argument("--shard-size", type=int, default=65536, help="nodes per shard (bounds memory)")
    p.add_argument("--local", action="store_true", help="start Ray embedded instead of joining the job's cluster")
    args = p.parse_args(argv)
    try:
        work = infer_pinsage(args.run, args.out, shard_size=args.shard_size, use_ray=True,
                             address=None if args.local else "auto", progress=False)
    except GraphrecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"item and user embeddings -> {work} (embeddings.npy, user_embeddings.npy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
