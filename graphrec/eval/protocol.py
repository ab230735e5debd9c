"""Ranking protocols on a chronological split: who is evaluated, what is ranked, what counts.

A protocol turns a split and a part (``valid`` / ``test``) into a :class:`RankingTask`:
per-user targets, per-user excluded items and (item→item) per-user query items. The
metrics (:mod:`graphrec.eval.metrics`) only rank; every choice of what is a target lives
here, in one place, for every model and baseline.

``seen(u)``: items user ``u`` interacted with before the part — train, and for ``test``
also valid. ``held(u)``: the distinct items of ``u``'s interactions in the part.

============== ==================================== ============================ ==========
protocol       targets                              excluded from the ranking    queries
============== ==================================== ============================ ==========
``new_items``  ``held(u) − seen(u)``                ``seen(u)``                  user
(default)      (repeats are not targets)
``with_repeats`` ``held(u)`` (repeats included)     nothing                      user
``item_to_item`` ``held(u) − seen(u)``              ``seen(u)`` (the query too)  ``u``'s last train item
``cold_items`` ``u``'s pairs with cold items        every warm item (ranked:     user
                                                    the cold items only)
============== ==================================== ============================ ==========

``cold_items`` (a cold-item split, :func:`graphrec.eval.split.cold_item_split`) ranks
in the ids of the split's ``cold_graph``: item position ``j`` of the task is the
``j``-th cold item of the part (:func:`cold_ranking_task`).

Users whose part holds no target under the protocol are skipped and counted
(``users_skipped``); ``heldout_repeats`` is the fraction of the part's distinct
(user, item) pairs that were already seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphrec.eval.split import Split
from graphrec.graph.csr import build_csr

PROTOCOLS = {
    "new_items": "new items only — each user's train items (and for test, valid items) are excluded from the "
                 "ranking; held-out interactions with an already-seen item are not targets; users left without a "
                 "target are skipped",
    "with_repeats": "repeat consumption — nothing is excluded; every held-out item is a target, including items the "
                    "user had already interacted with",
    "item_to_item": "the query is the user's last train item; the user's seen items (the query among them) are "
                    "excluded; targets are the user's held-out items not seen before",
    "cold_items": "cold start — candidates are only the cold items (removed from training entirely: no node, no "
                  "interaction); targets are the user's interactions with them; users without one are skipped",
}


@dataclass
class RankingTask:
    """What to rank for whom: CSR ``(indptr [U+1], items)`` of ``targets`` and
    ``exclude`` per user (disjoint), optional ``queries [U]`` (item→item), the users to
    evaluate and the bookkeeping reported next to the metrics."""

    protocol: str
    num_items: int
    targets: tuple[np.ndarray, np.ndarray]
    exclude: tuple[np.ndarray, np.ndarray] | None
    users: np.ndarray
    queries: np.ndarray | None = None
    counts: dict = field(default_factory=dict)


def _csr(src: np.ndarray, dst: np.ndarray, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    indptr, indices, _ = build_csr(np.asarray(src, np.int64), np.asarray(dst, np.int64), n_users, n_items)
    return np.asarray(indptr, np.int64), np.asarray(indices, np.int64)


def _pairs(src: np.ndarray, dst: np.ndarray, n_items: int) -> np.ndarray:
    """Distinct ``user * n_items + item`` keys (sorted)."""
    return np.unique(np.asarray(src, np.int64) * n_items + np.asarray(dst, np.int64))


def ranking_task(split: Split, part: str = "test", protocol: str = "new_items") -> RankingTask:
    """The :class:`RankingTask` of ``protocol`` on ``split``'s ``part``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (choose from {sorted(PROTOCOLS)})")
    if part not in ("valid", "test"):
        raise ValueError("part must be 'valid' or 'test'")
    user_type, _, item_type = split.relation
    n_users, n_items = split.train.num_nodes(user_type), split.train.num_nodes(item_type)
    hs, hd = split.heldout(part)
    held = _pairs(hs, hd, n_items)
    s_src, s_dst = split.seen(part)
    seen = _pairs(s_src, s_dst, n_items)
    repeat = np.isin(held, seen, assume_unique=True)
    users_with_heldout = np.unique(held // n_items)
    queries = None
    if protocol == "with_repeats":
        tgt, exclude = held, None
    else:
        tgt = held[~repeat]
        exclude = _csr(seen // n_items, seen % n_items, n_users, n_items)
    if protocol == "item_to_item":
        queries = last_items(split)
    targets = _csr(tgt // n_items, tgt % n_items, n_users, n_items)
    users = np.unique(tgt // n_items)
    if queries is not None:
        users = users[queries[users] >= 0]
    counts = {"users": int(users.shape[0]), "users_with_heldout": int(users_with_heldout.shape[0]),
              "users_skipped": int(users_with_heldout.shape[0] - users.shape[0]),
              "heldout_pairs": int(held.shape[0]), "heldout_repeats": float(repeat.mean()) if held.size else 0.0,
              "targets": int(np.isin(tgt // n_items, users).sum())}
    return RankingTask(protocol, n_items, targets, exclude, users, queries, counts)


def cold_ranking_task(split: Split, part: str = "test") -> tuple[RankingTask, np.ndarray]:
    """``(task, items)``: the ``cold_items`` protocol on a cold-item split's ``part``;
    ``items`` (int64 ``[C]``, cold-graph ids) are the candidates, task item ``j`` being
    ``items[j]``; users are cold-graph user ids."""
    items = split.cold_item_ids(part)
    hs, hd = split.cold_heldout(part)
    n_users = split.cold_graph().num_nodes(split.relation[0])
    n = items.shape[0]
    held = _pairs(hs, np.searchsorted(items, hd), n)
    targets = _csr(held // n, held % n, n_users, n)
    users = np.unique(held // n)
    counts = {"users": int(users.shape[0]), "users_with_heldout": int(users.shape[0]), "users_skipped": 0,
              "heldout_pairs": int(held.shape[0]), "heldout_repeats": 0.0, "targets": int(held.shape[0]),
              "candidates": int(n)}
    return RankingTask("cold_items", n, targets, None, users, None, counts), items


def last_items(split: Split) -> np.ndarray:
    """Each user's most recent item of the split relation's train edges, int64 ``[U]``
    (``-1`` for users without any; ties in time: the later edge in CSR order)."""
    rel = split.train.relation(split.relation)
    src, dst = rel.coo()
    ts = rel.edge_attr("timestamp") if "timestamp" in rel.attr_names else np.arange(src.shape[0])
    ts = np.asarray(ts, dtype=np.int64)
    n_users = split.train.num_nodes(split.relation[0])
    order = np.lexsort((np.arange(src.shape[0]), ts, src))  # last of each user's run = latest
    s = src[order]
    last = np.r_[s[1:] != s[:-1], True]
    out = np.full(n_users, -1, dtype=np.int64)
    out[s[last]] = np.asarray(dst)[order][last]
    return out


def evaluate_task(score_fn, task: RankingTask, ks=(10, 20), batch_size: int = 1024) -> dict:
    """Mean expected metrics of ``score_fn`` on ``task`` (see
    :func:`graphrec.eval.metrics.evaluate_ranking`) plus the task's counts and protocol.
    ``score_fn(queries [B]) -> [B, num_items]`` gets user ids, or the item→item query
    items of those users."""
    from graphrec.eval.metrics import evaluate_ranking

    out = evaluate_ranking(score_fn, task.targets, task.num_items, exclude=task.exclude, ks=ks,
                           batch_size=batch_size, users=task.users, queries=task.queries)
    return {**task.counts, **out, "protocol": task.protocol}
