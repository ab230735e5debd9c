"""The same exported vectors scored by the old evaluator and by the new protocol.

    python benchmarks/protocol_change.py OUT_DIR     # OUT_DIR of `graphrec run configs/quickstart.yaml`

Old (``graphrec/eval/metrics.py`` at commit 895df5e, read from git history): every test
item a target, seen items masked *except* the targets (so among a user's history exactly
the right answers survived), MRR counting ties in the model's favour, top-K ties by item
index. New: :mod:`graphrec.eval.protocol` ``new_items`` (seen items excluded and no
targets, repeat-only users skipped) with ties as a random order. Prints test Recall@20
and MRR of both models, popularity and a constant scorer.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OLD_COMMIT = "895df5e"


def old_metrics():
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:graphrec/eval/metrics.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_metrics.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_metrics", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    from graphrec.eval import evaluate_task, load_split, ranking_task
    from graphrec.eval.baselines import popularity_scorer
    from graphrec.graph.csr import build_csr
    from graphrec.infer.export import read_vectors

    job = Path(sys.argv[1])
    old = old_metrics()
    s = load_split(job / "split")
    et = s.relation
    n_u, n_i = s.train.num_nodes(et[0]), s.train.num_nodes(et[2])
    targets = build_csr(*s.heldout("test"), n_u, n_i)[:2]
    seen = build_csr(*s.seen("test"), n_u, n_i)[:2]
    task = ranking_task(s, "test")
    scorers = {}
    for m in ("twhin", "pinsage"):
        d = job / "embeddings" / m / "retrieval" / "__".join(et)
        if d.is_dir():
            q, c = (torch.tensor(read_vectors(d / f"{x}.parquet")[1]) for x in ("query", "candidate"))
            scorers[m] = lambda u, q=q, c=c: q[u] @ c.T
    scorers["popularity"] = popularity_scorer(s)
    scorers["constant scorer"] = lambda u: torch.zeros(u.shape[0], n_i)
    print(f"{job}: test users {task.counts['users_with_heldout']:,}, {task.counts['heldout_repeats']:.1%} of held-out "
          f"pairs are repeats, {task.counts['users_skipped']:,} users have no new item\n")
    print("| scorer | old R@20 | old MRR | new R@20 | new MRR |\n|---|---|---|---|---|")
    for name, fn in scorers.items():
        o = old.evaluate_ranking(fn, targets, n_i, seen=seen, ks=(20,))
        n = evaluate_task(fn, task, (20,))
        print(f"| {name} | {o['recall@20']:.4f} | {o['mrr']:.4f} | {n['recall@20']:.4f} | {n['mrr']:.4f} |")


if __name__ == "__main__":
    main()
