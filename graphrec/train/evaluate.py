"""Evaluating a trained run on a split: glue between models and ``graphrec.eval``.

* ranking (user → item Recall/NDCG/HitRate@K, MRR; full ranking, train items masked) on
  the split relation of a chronological split;
* filtered link prediction (MRR, Hits@1/3/10, head and tail corruption, all known true
  triples of train, valid and test filtered) on every held-out relation the model knows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from graphrec.eval.link_prediction import KnownTriples, filtered_link_prediction
from graphrec.eval.metrics import evaluate_ranking
from graphrec.eval.split import Split
from graphrec.models.twhin import TwHIN


def ranking_on_split(model: TwHIN, split: Split, part: str = "test", ks: Sequence[int] = (10, 20)) -> dict:
    """Ranking metrics of the split relation's ``part`` edges; seen items = train (+ valid
    when evaluating test)."""
    et = split.relation
    n_items = split.train.num_nodes(et[2])
    seen = split.seen_csr(include_valid=(part == "test"))
    with torch.no_grad():
        return evaluate_ranking(lambda u: model.score_tails(et, u), split.heldout_csr(part), n_items, seen=seen, ks=ks)


def link_prediction_on_split(model: TwHIN, split: Split, part: str = "test", ks: Sequence[int] = (1, 3, 10),
                             relations: Sequence | None = None, max_per_relation: int | None = None) -> dict:
    """Filtered link prediction on the held-out ``part`` triples of relations the model
    was trained on."""
    store = split.train
    test_all = split.heldout_triples(part)
    trained = set(model.edge_types)
    test = {et: v for et, v in test_all.items() if et in trained and (relations is None or et in relations)}
    if max_per_relation is not None:
        test = {et: (s[:max_per_relation], d[:max_per_relation]) for et, (s, d) in test.items()}
    num_src = {et: store.num_nodes(et[0]) for et in test}
    num_dst = {et: store.num_nodes(et[2]) for et in test}
    known = KnownTriples(num_src, num_dst)
    for et in test:
        s, d = store.relation(et).coo()
        known.add(et, s, d)
        for p in ("valid", "test"):
            hs, hd = split.heldout_triples(p).get(et, (None, None))
            if hs is not None:
                known.add(et, hs, hd)
    with torch.no_grad():
        return filtered_link_prediction(lambda et, h: model.score_tails(et, h), lambda et, t: model.score_heads(et, t),
                                        test, known, ks=ks)
