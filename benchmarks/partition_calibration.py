"""Where partitioned TwHIN loses Recall@20 on ML-100K (issue 14 diagnostics; chooses nothing).

    python benchmarks/partition_calibration.py [--work /tmp/pq] [--seeds 0 1 2] [--partitions 4]

Reads the runs that ``benchmarks/partitioned_quality.py --datasets ml100k --partitions 1 P
--work WORK`` left in ``WORK/runs/ml100k-P{1,P}-s{seed}`` and prints, for P=1 and P:

* **Recall@20 by the held-out item's train degree** (valid and test): each bin's
  contribution to the per-user mean, so the bins add up to the metric; and the average
  number of a valid user's 20 slots that go to each bin.
* **Per-partition calibration** (valid): one scalar bias per item partition (the P
  groups of ``graphrec.graph.partition`` for the run's seed, at P=1 too, where they are
  arbitrary groups) fitted on valid by coordinate search, and the valid Recall@20 before
  and after. The fit is an upper bound overfitted to valid; the P=1 figure says how much
  of it is that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphrec.eval import load_split  # noqa: E402
from graphrec.eval.protocol import evaluate_task, ranking_task  # noqa: E402
from graphrec.graph.csr import csr_rows  # noqa: E402
from graphrec.graph.partition import NodePartitioning, PartitionSpec  # noqa: E402
from graphrec.run.directory import open_run  # noqa: E402

DEGREE_BINS = (0, 1, 10, 50, 150, np.iinfo(np.int64).max)


def masked_scores(model, et, task) -> np.ndarray:
    """``[users, items]`` scores with each user's seen items at -inf."""
    scores = model.score_tails(et, torch.as_tensor(task.users)).detach().numpy()
    rows, cols = csr_rows(task.exclude[0], task.exclude[1], task.users)
    scores[rows, cols] = -np.inf
    return scores


def by_degree(scores: np.ndarray, task, degree: np.ndarray, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``(recall contribution per bin, slots per bin)``, both ``[bins]``."""
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    ip, it = task.targets
    bins = np.digitize(degree, DEGREE_BINS[1:-1])
    recall = np.zeros(len(DEGREE_BINS) - 1)
    for row, u in enumerate(task.users):
        targets = it[ip[u]:ip[u + 1]]
        hit = np.isin(targets, top[row])
        recall += np.bincount(bins[targets], weights=hit, minlength=recall.shape[0]) / targets.shape[0]
    slots = np.bincount(bins[top].ravel(), minlength=recall.shape[0]) / task.users.shape[0]
    return recall / task.users.shape[0], slots


def calibrate(model, et, task, groups: np.ndarray, num_groups: int) -> tuple[float, float, np.ndarray]:
    """Valid Recall@20 before and after fitting one bias per item group (two rounds of
    coordinate search over fixed steps; group 0 is the reference)."""
    g = torch.as_tensor(groups)

    def recall(bias: np.ndarray) -> float:
        b = torch.as_tensor(bias, dtype=torch.float32)[g]
        return evaluate_task(lambda u: model.score_tails(et, u) + b, task, (20,))["recall@20"]

    bias = np.zeros(num_groups)
    base = best = recall(bias)
    for _ in range(2):
        for j in range(1, num_groups):
            for step in (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5):
                trial = bias.copy()
                trial[j] += step
                r = recall(trial)
                if r > best + 1e-12:
                    best, bias = r, trial
    return base, best, bias


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/pq"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    split = load_split(args.work / "ml100k" / "split")
    et = split.relation
    _, dst = split.train.relation(et).coo()
    degree = np.bincount(dst, minlength=split.train.num_nodes(et[2]))
    labels = [f"{lo}-{hi - 1}" if hi < DEGREE_BINS[-1] else f">={lo}" for lo, hi in zip(DEGREE_BINS, DEGREE_BINS[1:])]
    tasks = {part: ranking_task(split, part, "new_items") for part in ("valid", "test")}
    for part, task in tasks.items():
        ip, it = task.targets
        print(f"{part}: held-out targets by train degree {dict(zip(labels, np.bincount(np.digitize(degree[it], DEGREE_BINS[1:-1]), minlength=len(labels)).tolist()))}")
    for p in (1, args.partitions):
        out = {part: [] for part in tasks}
        slots, calib = [], []
        for seed in args.seeds:
            model = open_run(args.work / "runs" / f"ml100k-P{p}-s{seed}").model
            for part, task in tasks.items():
                rec, sl = by_degree(masked_scores(model, et, task), task, degree)
                out[part].append(rec)
                if part == "valid":
                    slots.append(sl)
            groups = NodePartitioning({et[2]: int(degree.shape[0])}, PartitionSpec(args.partitions, 0, seed)).part(et[2])
            calib.append(calibrate(model, et, tasks["valid"], np.asarray(groups, np.int64), args.partitions))
        for part in tasks:
            r = np.mean(out[part], axis=0)
            print(f"P={p} {part} R@20 by degree {dict(zip(labels, r.round(4).tolist()))} total {r.sum():.4f}")
        print(f"P={p} valid slots of 20 by degree {dict(zip(labels, np.mean(slots, axis=0).round(2).tolist()))}")
        for seed, (base, best, bias) in zip(args.seeds, calib):
            print(f"P={p} seed {seed}: valid R@20 {base:.4f} -> {best:.4f} with per-partition biases {bias.round(2).tolist()}")


if __name__ == "__main__":
    main()
