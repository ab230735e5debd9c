"""Entry point for `ray job submit`: twhin training on a Ray cluster.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train_twhin.py --config configs/twhin-ml100k.yaml \
        --graph /shared/ml100k-split/train --out /shared/runs/twhin --workers 4
    # partitioned (PyTorch-BigGraph-style buckets, tables out of core): add --partitions P

Inside a submitted job Ray is already running: the script connects to it
(``address="auto"``) and runs the same ``train_loop_per_worker`` as ``graphrec train
twhin`` on ``--workers`` Ray Train workers (with ``--partitions P``: ``--workers`` bucket
trainers around one lock-server/parameter-server actor, graphrec/train/partitioned.py). The graph store and the run directory must be
on storage every node can read (the store is memory-mapped by each worker); without a
cluster (``--local``) Ray starts embedded, exactly like the CLI.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the job's working dir, if graphrec is not installed

from graphrec.train.runs import job_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(job_main("twhin"))
