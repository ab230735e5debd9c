"""Evaluating a trained run on a split: glue between models and ``graphrec.eval``.

* ranking (user → item Recall/NDCG/HitRate@K, MRR; full ranking, train items masked) on
  the split relation of a chronological split;
* filtered link prediction (MRR, Hits@1/3/10, head and tail corruption, all known true
  triples of train, valid and test filtered) on every held-out relation the model knows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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


def last_items(split: Split) -> np.ndarray:
    """Each user's most recent item of the split relation's train edges, int64 ``[U]``
    (``-1`` for users without any)."""
    rel = split.train.relation(split.relation)
    src, dst = rel.coo()
    ts = rel.edge_attr("timestamp") if "timestamp" in rel.attr_names else np.arange(src.shape[0])
    ts = np.asarray(ts, dtype=np.int64)
    n_users = split.train.num_nodes(split.relation[0])
    order = np.lexsort((np.arange(src.shape[0]), ts, src))  # last of each user's run = latest
    s = src[order]
    last = np.r_[s[1:] != s[:-1], True]
    out = np.full(n_users, -1, dtype=np.int64)
    out[s[last]] = dst[order][last]
    return out


def vectors_ranking_on_split(user_vectors, item_vectors, split: Split, part: str = "test",
                             ks: Sequence[int] = (10, 20)) -> dict:
    """User→item ranking metrics with ``score(u, i) = user_vectors[u] · item_vectors[i]``."""
    u = torch.tensor(np.asarray(user_vectors), dtype=torch.float32)
    it = torch.tensor(np.asarray(item_vectors), dtype=torch.float32)
    seen = split.seen_csr(include_valid=(part == "test"))
    return evaluate_ranking(lambda b: u[b] @ it.T, split.heldout_csr(part), it.shape[0], seen=seen, ks=ks)


def item_to_item_on_split(item_vectors, split: Split, part: str = "test", ks: Sequence[int] = (10, 20)) -> dict:
    """Item→item retrieval: for each user with ``part`` items, the query is the user's
    last train item; every item is ranked by ``item_vectors[query] · item_vectors[i]``
    (the user's already-seen items, the query among them, masked); the targets are the
    user's ``part`` items. Returns ``hit@K`` (HitRate), ``mrr``, ``recall@K``, …"""
    it = torch.tensor(np.asarray(item_vectors), dtype=torch.float32)
    q = torch.from_numpy(last_items(split))
    users = np.flatnonzero(q.numpy() >= 0)
    seen = split.seen_csr(include_valid=(part == "test"))
    return evaluate_ranking(lambda b: it[q[b]] @ it.T, split.heldout_csr(part), it.shape[0], seen=seen, ks=ks,
                            users=users)


def evaluate_run(run_dir, split: Split, part: str = "test", ks: Sequence[int] = (10, 20),
                 link_prediction: bool | None = None) -> dict:
    """Metrics of a finished run (any model) on ``split``'s ``part``.

    TwHIN: ``ranking`` (user→item, chronological splits) and ``link_prediction``
    (filtered; default on for random splits). PinSage: ``ranking`` with its exported
    user and item vectors, and ``item_to_item`` (query = each user's last train item)."""
    from graphrec.errors import GraphrecError
    from graphrec.train.runs import run_model

    model_name = run_model(run_dir)
    out = {}
    if model_name == "pinsage":
        from graphrec.train.pinsage import PinSageRun

        if split.relation is None:
            raise GraphrecError(f"{split.path}: a random split; PinSage runs are evaluated on a chronological split")
        if link_prediction:
            raise GraphrecError("--link-prediction applies to TwHIN runs only")
        run = PinSageRun(run_dir, graph=split.path / "train")
        trained = run.info["config"]["interactions"]
        if ":".join(split.relation) != trained:
            raise GraphrecError(f"{split.path}: split relation {':'.join(split.relation)} is not the run's interactions "
                                f"{trained}")
        out["ranking"] = vectors_ranking_on_split(run.user_vectors, run.item_vectors, split, part, ks)
        out["item_to_item"] = item_to_item_on_split(run.item_vectors, split, part, ks)
        return out
    from graphrec.train.twhin import load_run

    model, _, _ = load_run(run_dir, graph=split.path / "train")
    if split.relation is not None:
        out["ranking"] = ranking_on_split(model, split, part, ks)
    if link_prediction or (link_prediction is None and split.relation is None):
        out["link_prediction"] = link_prediction_on_split(model, split, part)
    return out
