"""Evaluation: splits (chronological, random, given), ranking protocols, tie-aware metrics,
filtered link prediction and the popularity baseline."""

from graphrec.eval.baselines import item_popularity, popularity_scorer, relation_popularity_scorers
from graphrec.eval.metrics import csr_rows, evaluate_ranking, ranking_metrics_batch
from graphrec.eval.protocol import PROTOCOLS, RankingTask, evaluate_task, ranking_task
from graphrec.eval.split import (Split, SplitResult, chronological_split, given_split, load_split, random_split,
                                 split_labels)

__all__ = [
    "PROTOCOLS",
    "RankingTask",
    "Split",
    "SplitResult",
    "chronological_split",
    "csr_rows",
    "evaluate_ranking",
    "evaluate_task",
    "given_split",
    "item_popularity",
    "load_split",
    "popularity_scorer",
    "random_split",
    "ranking_metrics_batch",
    "ranking_task",
    "relation_popularity_scorers",
    "split_labels",
]
