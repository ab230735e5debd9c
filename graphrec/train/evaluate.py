"""Evaluating trained runs on a split: glue between models and ``graphrec.eval``.

Every evaluation reports the popularity baseline (:mod:`graphrec.eval.baselines`) next
to the model, on the same protocol (:mod:`graphrec.eval.protocol`), and names the
protocol in its output:

* chronological splits: ``user_to_item`` under ``new_items`` (the default: each user's
  already-seen items are excluded and are no targets), ``item_to_item`` for item
  embeddings, optionally ``user_to_item_with_repeats`` (repeat consumption: nothing
  excluded);
* random or given splits: filtered link prediction (MRR, Hits@1/3/10, head and tail
  corruption, every known true triple of train, valid and test filtered) on every
  held-out relation the model knows; the baseline ranks entities by how often they are
  the head / tail of the relation in train.

Output shape (also ``summary.json["evaluation"]`` of ``graphrec run``)::

    {"part": "test", "ks": [...], "protocols": {name: description},
     "models": {"twhin": {"user_to_item": {"recall@20": ...}, ...},
                "popularity": {"user_to_item": {...}, ...}}}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from graphrec.errors import GraphrecError
from graphrec.eval.baselines import popularity_scorer, relation_popularity_scorers
from graphrec.eval.link_prediction import KnownTriples, filtered_link_prediction
from graphrec.eval.protocol import PROTOCOLS, evaluate_task, ranking_task
from graphrec.eval.split import Split
from graphrec.models.twhin import TwHIN

LINK_PREDICTION = ("filtered link prediction: every held-out triple ranked against all entities of the relation's "
                   "head and tail types, other known true triples (train, valid, test) filtered; ties count as a "
                   "random order")


def ranking_on_split(model: TwHIN, split: Split, part: str = "test", ks: Sequence[int] = (10, 20),
                     protocol: str = "new_items") -> dict:
    """User→item metrics of a TwHIN model on the split relation (``score_tails``)."""
    et = split.relation
    return evaluate_task(lambda u: model.score_tails(et, u), ranking_task(split, part, protocol), ks)


def vectors_ranking_on_split(user_vectors, item_vectors, split: Split, part: str = "test",
                             ks: Sequence[int] = (10, 20), protocol: str = "new_items") -> dict:
    """User→item metrics with ``score(u, i) = user_vectors[u] · item_vectors[i]``."""
    u = torch.tensor(np.asarray(user_vectors), dtype=torch.float32)
    it = torch.tensor(np.asarray(item_vectors), dtype=torch.float32)
    return evaluate_task(lambda b: u[b] @ it.T, ranking_task(split, part, protocol), ks)


def item_to_item_on_split(item_vectors, split: Split, part: str = "test", ks: Sequence[int] = (10, 20)) -> dict:
    """Item→item metrics (``item_to_item`` protocol): the query is each user's last train
    item, items ranked by ``item_vectors[query] · item_vectors[i]``."""
    it = torch.tensor(np.asarray(item_vectors), dtype=torch.float32)
    return evaluate_task(lambda q: it[q] @ it.T, ranking_task(split, part, "item_to_item"), ks)


def popularity_on_split(split: Split, part: str = "test", ks: Sequence[int] = (10, 20), item_to_item: bool = True,
                        repeats: bool = False) -> dict:
    """The popularity baseline on the same protocols as the models."""
    score = popularity_scorer(split)
    out = {"user_to_item": evaluate_task(score, ranking_task(split, part, "new_items"), ks)}
    if item_to_item:
        out["item_to_item"] = evaluate_task(score, ranking_task(split, part, "item_to_item"), ks)
    if repeats:
        out["user_to_item_with_repeats"] = evaluate_task(score, ranking_task(split, part, "with_repeats"), ks)
    return out


def vectors_on_split(query_vectors, candidate_vectors, item_vectors, split: Split, part: str = "test",
                     ks: Sequence[int] = (10, 20), repeats: bool = False) -> dict:
    """User→item (and with repeats) from retrieval vectors, item→item from item vectors."""
    out = {"user_to_item": vectors_ranking_on_split(query_vectors, candidate_vectors, split, part, ks)}
    if item_vectors is not None:
        out["item_to_item"] = item_to_item_on_split(item_vectors, split, part, ks)
    if repeats:
        out["user_to_item_with_repeats"] = vectors_ranking_on_split(query_vectors, candidate_vectors, split, part, ks,
                                                                    protocol="with_repeats")
    return out


def link_prediction_on_split(model: TwHIN | None, split: Split, part: str = "test", ks: Sequence[int] = (1, 3, 10),
                             relations: Sequence | None = None, max_per_relation: int | None = None,
                             edge_types: Sequence | None = None, scorers: tuple | None = None) -> dict:
    """Filtered link prediction on the held-out ``part`` triples of the relations the
    model was trained on; with ``model=None`` (then ``edge_types`` names the relations)
    scores with ``scorers`` — ``(score_tails, score_heads)`` callables as
    :func:`~graphrec.eval.link_prediction.filtered_link_prediction` takes, e.g. a peer
    library's model — or, without them, the popularity baseline."""
    store = split.train
    test_all = split.heldout_triples(part)
    heldout = {p: test_all if p == part else split.heldout_triples(p) for p in ("valid", "test")}
    trained = set(model.edge_types if model is not None else map(tuple, edge_types or test_all))
    test = {et: v for et, v in test_all.items() if et in trained and (relations is None or et in relations)}
    if not test:
        raise GraphrecError(f"{split.path}: no held-out {part} triple of a relation the model was trained on")
    if max_per_relation is not None:
        test = {et: (s[:max_per_relation], d[:max_per_relation]) for et, (s, d) in test.items()}
    num_src = {(s, r, d): store.num_nodes(s) for s, r, d in test}
    num_dst = {(s, r, d): store.num_nodes(d) for s, r, d in test}
    known = KnownTriples(num_src, num_dst)
    for et in test:
        s, d = store.relation(et).coo()
        known.add(et, s, d)
        for p in ("valid", "test"):
            hs, hd = heldout[p].get(et, (None, None))
            if hs is not None:
                known.add(et, hs, hd)
    if model is None and scorers is not None:
        tails, heads = scorers
    elif model is None:
        tails, heads = relation_popularity_scorers(store, list(test))
    else:
        tails, heads = (lambda et, h: model.score_tails(et, h)), (lambda et, t: model.score_heads(et, t))
    with torch.no_grad():
        return filtered_link_prediction(tails, heads, test, known, ks=ks)


def protocols_used(split: Split, item_to_item: bool, repeats: bool, link_prediction: bool) -> dict:
    """``{metric group: protocol description}`` for the output."""
    out = {}
    if split.relation is not None:
        out["user_to_item"] = "new_items: " + PROTOCOLS["new_items"]
        if item_to_item:
            out["item_to_item"] = "item_to_item: " + PROTOCOLS["item_to_item"]
        if repeats:
            out["user_to_item_with_repeats"] = "with_repeats: " + PROTOCOLS["with_repeats"]
    if link_prediction:
        out["link_prediction"] = LINK_PREDICTION
    return out


CONTENT_KINDS = ("features", "features+graph")


def cold_items_on_split(split: Split, part: str = "test", ks: Sequence[int] = (10, 20),
                        vectors: tuple | None = None) -> dict:
    """``{model: metrics}`` of the ``cold_items`` protocol: the content baselines
    (``content (features)``, ``content (features+graph)``: cosine to the user's history),
    ``random`` and, with ``vectors = (user_vectors, item_vectors)`` in the cold graph's
    ids (``graphrec infer --graph SPLIT/cold_graph``), the model."""
    from graphrec.eval.baselines import content_scorer
    from graphrec.eval.protocol import cold_ranking_task

    task, items = cold_ranking_task(split, part)
    graph = split.cold_graph()
    out = {}
    if vectors is not None:
        u = torch.tensor(np.asarray(vectors[0]), dtype=torch.float32)
        it = torch.tensor(np.asarray(vectors[1])[items], dtype=torch.float32)
        out["model"] = evaluate_task(lambda b: u[b] @ it.T, task, ks)
    for kind in CONTENT_KINDS:
        try:
            out[f"content ({kind})"] = evaluate_task(content_scorer(graph, split.relation, items, kind), task, ks)
        except ValueError:  # the item type has no such content (no features, no side relations)
            continue
    out["random"] = evaluate_task(lambda b: torch.zeros(b.shape[0], items.shape[0]), task, ks)
    return out


def evaluate_run(run_dir, split: Split, part: str = "test", ks: Sequence[int] = (10, 20),
                 link_prediction: bool | None = None, repeats: bool = False, cold_vectors: tuple | None = None) -> dict:
    """Metrics of a finished run (any model) and of the popularity baseline on
    ``split``'s ``part`` (the module docstring gives the shape).

    TwHIN: ``user_to_item`` on chronological splits and ``link_prediction`` (default on
    for random and given splits). PinSage: ``user_to_item`` with its user and item
    vectors, and ``item_to_item``; on a cold-item split also ``cold_items``: the content
    and random baselines and, with ``cold_vectors = (user_vectors, item_vectors, graph)``
    (:func:`graphrec.infer.layerwise.read_inference` of a ``graphrec infer --graph
    SPLIT/cold_graph`` directory), the model."""
    from graphrec.run.directory import open_run, run_model

    model_name = run_model(run_dir)
    models: dict = {}
    lp = bool(link_prediction or (link_prediction is None and split.relation is None))
    if model_name == "pinsage":
        if split.relation is None:
            raise GraphrecError(f"{split.path}: a random split; PinSage runs are evaluated on a chronological split")
        if link_prediction:
            raise GraphrecError("--link-prediction applies to TwHIN runs only")
        run = open_run(run_dir, graph=split.path / "train", expect="pinsage")
        trained = run.info["config"]["interactions"]
        if ":".join(split.relation) != trained:
            raise GraphrecError(f"{split.path}: split relation {':'.join(split.relation)} is not the run's interactions "
                                f"{trained}")
        models["pinsage"] = vectors_on_split(run.user_vectors, run.item_vectors, run.item_vectors, split, part, ks,
                                             repeats)
        models["popularity"] = popularity_on_split(split, part, ks, item_to_item=True, repeats=repeats)
        protocols = protocols_used(split, True, repeats, False)
        if split.has_cold_items:
            vectors = None
            if cold_vectors is not None:
                users, items, graph = cold_vectors
                cold = split.cold_graph()
                if graph is None or graph.checksum != cold.checksum:
                    raise GraphrecError(f"--inference: embeds {graph.path if graph else 'the run graph'}, not the "
                                        f"split's {cold.path}; run `graphrec infer --run {run_dir} --graph {cold.path}`")
                vectors = (users, items)
            for name, metrics in cold_items_on_split(split, part, ks, vectors).items():
                models.setdefault("pinsage" if name == "model" else name, {})["cold_items"] = metrics
            protocols["cold_items"] = "cold_items: " + PROTOCOLS["cold_items"]
        elif cold_vectors is not None:
            raise GraphrecError(f"--inference: {split.path} is not a cold-item split (`graphrec split --cold-items`)")
        return {"part": part, "ks": list(ks), "protocols": protocols, "models": models}
    if cold_vectors is not None:
        raise GraphrecError("--inference applies to PinSage runs (inductive inference)")
    model = open_run(run_dir, graph=split.path / "train", expect="twhin").model
    twhin, pop = {}, {}
    if split.relation is not None:
        if split.relation not in model.edge_types:
            raise GraphrecError(f"{split.path}: split relation {':'.join(split.relation)} is not one the run was "
                                "trained on")
        twhin["user_to_item"] = ranking_on_split(model, split, part, ks)
        if repeats:
            twhin["user_to_item_with_repeats"] = ranking_on_split(model, split, part, ks, protocol="with_repeats")
        pop = popularity_on_split(split, part, ks, item_to_item=False, repeats=repeats)
    if lp:
        twhin["link_prediction"] = link_prediction_on_split(model, split, part)
        pop["link_prediction"] = link_prediction_on_split(None, split, part, edge_types=model.edge_types)
    models["twhin"], models["popularity"] = twhin, pop
    return {"part": part, "ks": list(ks), "protocols": protocols_used(split, False, repeats, lp), "models": models}
