"""Evaluation protocol: chronological splits and ranking metrics."""

from graphrec.eval.metrics import csr_rows, evaluate_ranking, ranking_metrics_batch
from graphrec.eval.split import Split, SplitResult, chronological_split, load_split, random_split, split_labels

__all__ = [
    "Split",
    "SplitResult",
    "chronological_split",
    "csr_rows",
    "evaluate_ranking",
    "load_split",
    "random_split",
    "ranking_metrics_batch",
    "split_labels",
]
