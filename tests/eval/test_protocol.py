"""Ranking protocols against a reference written from the raw interaction log.

The reference reads the split's parquet files and train graph as plain Python sets per
user and applies the protocol's definition (targets = held-out items the user had not
interacted with before; seen items never ranked), then ranks with plain sorting.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.eval import chronological_split, load_split
from graphrec.eval.protocol import evaluate_task, ranking_task
from graphrec.graph import build_graph, parse_schema

SCHEMA = {
    "name": "log",
    "nodes": {"user": {}, "item": {}},
    "missing_endpoints": "add",
    "relations": [
        {"name": "bought", "source": "log.csv", "src": {"type": "user", "column": "u"},
         "dst": {"type": "item", "column": "i"}, "timestamp": "ts"},
        {"name": "follows", "source": "follows.csv", "src": {"type": "user", "column": "u"},
         "dst": {"type": "user", "column": "v"}, "timestamp": "ts"},
    ],
}


def _write_log(d, rows, follows):
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["u", "i", "ts"]).to_csv(d / "log.csv", index=False)
    pd.DataFrame(follows, columns=["u", "v", "ts"]).to_csv(d / "follows.csv", index=False)


@pytest.fixture
def repeat_split(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        items = rng.integers(0, 25, rng.integers(5, 15))  # repeats within a user's history
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(items)]
    # user 'solo': the only test interaction repeats a train item -> no new target
    rows += [("solo", "i1", 0), ("solo", "i2", 1), ("solo", "i3", 2), ("solo", "i4", 3), ("solo", "i1", 4)]
    follows = [(f"u{u}", f"u{(u + 1) % 60}", int(rng.integers(0, 15))) for u in range(60)]
    _write_log(tmp_path / "data", rows, follows)
    store = build_graph(parse_schema(SCHEMA), tmp_path / "g", data_dir=tmp_path / "data", progress=False)
    chronological_split(store, ("user", "bought", "item"), fractions=(0.6, 0.2, 0.2), out=tmp_path / "s")
    return load_split(tmp_path / "s")


def _reference_sets(split, part):
    """{user: (targets, seen)} from the split's files, with plain sets."""
    tr_s, tr_d = split.train.relation(split.relation).coo()
    seen = {}
    for u, i in zip(tr_s.tolist(), np.asarray(tr_d).tolist()):
        seen.setdefault(u, set()).add(i)
    if part == "test":
        v = pd.read_parquet(split.path / "valid.parquet")
        for u, i in zip(v.src, v.dst):
            seen.setdefault(int(u), set()).add(int(i))
    held = {}
    for u, i in zip(*(pd.read_parquet(split.path / f"{part}.parquet")[c] for c in ("src", "dst"))):
        held.setdefault(int(u), set()).add(int(i))
    return held, seen


def _reference_metrics(scores, held, seen, protocol, k):
    rec, mrr = [], []
    for u, h in held.items():
        s = seen.get(u, set())
        targets = h - s if protocol == "new_items" else h
        if not targets:
            continue
        cand = [i for i in range(scores.shape[1]) if protocol != "new_items" or i not in s]
        ranked = sorted(cand, key=lambda i: -scores[u, i])
        rec.append(len(set(ranked[:k]) & targets) / len(targets))
        mrr.append(1 / (1 + next(r for r, i in enumerate(ranked) if i in targets)))
    return np.mean(rec), np.mean(mrr), len(rec)


@pytest.mark.parametrize("part", ["valid", "test"])
def test_new_items_protocol_matches_reference(repeat_split, part):
    sp = repeat_split
    held, seen = _reference_sets(sp, part)
    n_users, n_items = sp.train.num_nodes("user"), sp.train.num_nodes("item")
    scores = np.random.default_rng(1).standard_normal((n_users, n_items))
    st = torch.from_numpy(scores)
    for protocol in ("new_items", "with_repeats"):
        task = ranking_task(sp, part, protocol)
        got = evaluate_task(lambda u: st[u], task, ks=(5,))
        rec, mrr, n = _reference_metrics(scores, held, seen, protocol, 5)
        assert got["users"] == n and got["protocol"] == protocol
        assert got["recall@5"] == pytest.approx(rec) and got["mrr"] == pytest.approx(mrr)
        assert got["users_skipped"] == len(held) - n
    repeats = sum(len(h & seen.get(u, set())) for u, h in held.items()) / sum(len(h) for h in held.values())
    assert ranking_task(sp, part).counts["heldout_repeats"] == pytest.approx(repeats) and repeats > 0.1


def test_repeat_only_user_is_not_counted(repeat_split):
    sp = repeat_split
    solo = int(sp.train.lookup("user", ["solo"])[0])
    test = pd.read_parquet(sp.path / "test.parquet")
    assert test[test.src == solo].dst_id.tolist() == ["i1"]  # a repeat of a train item
    task = ranking_task(sp, "test", "new_items")
    assert solo not in task.users.tolist()
    assert solo in ranking_task(sp, "test", "with_repeats").users.tolist()
    # a scorer that puts the repeat first gets nothing for it under the default protocol
    n_items = sp.train.num_nodes("item")
    i1 = int(sp.train.lookup("item", ["i1"])[0])
    only_solo = ranking_task(sp, "test", "with_repeats")
    only_solo.users = np.array([solo])
    favour = torch.zeros(1, n_items)
    favour[0, i1] = 1.0
    assert evaluate_task(lambda u: favour.expand(u.shape[0], -1), only_solo, ks=(1,))["recall@1"] == 1.0


def test_item_to_item_excludes_query_and_seen(repeat_split):
    sp = repeat_split
    task = ranking_task(sp, "test", "item_to_item")
    held, seen = _reference_sets(sp, "test")
    for u in task.users.tolist():
        q = int(task.queries[u])
        excl = set(task.exclude[1][task.exclude[0][u] : task.exclude[0][u + 1]].tolist())
        tg = set(task.targets[1][task.targets[0][u] : task.targets[0][u + 1]].tolist())
        assert q in excl and excl == seen[u] and tg == held[u] - seen[u]


def test_constant_scorer_gets_random_figures(repeat_split):
    task = ranking_task(repeat_split, "test")
    n_items = repeat_split.train.num_nodes("item")
    got = evaluate_task(lambda u: torch.zeros(u.shape[0], n_items), task, ks=(5,))
    held, seen = _reference_sets(repeat_split, "test")
    # expected recall@5 of a random order: 5 / (number of candidates), per user
    exp = [min(5, n_items - len(seen.get(u, ()))) / (n_items - len(seen.get(u, ()))) for u, h in held.items()
           if h - seen.get(u, set())]
    assert got["recall@5"] == pytest.approx(np.mean(exp))
    assert got["mrr"] < 0.5


def test_side_relations_cut_at_first_heldout_time(repeat_split):
    sp = repeat_split
    test = pd.read_parquet(sp.path / "test.parquet")
    valid = pd.read_parquet(sp.path / "valid.parquet")
    first = pd.concat([valid, test]).groupby("src").timestamp.min()
    f = sp.train.relation(("user", "follows", "user"))
    s, _ = f.coo()
    ts = np.asarray(f.edge_attr("timestamp"))
    limit = first.reindex(s).fillna(np.inf).to_numpy()
    assert (ts < limit).all()  # nothing at or after a user's first held-out time survives
    cut = sp.info["counts"]["side_cut"]["user:follows:user"]
    assert cut > 0 and f.num_edges == 60 - cut
    # and the option keeps them
    from graphrec.graph import GraphStore

    g = GraphStore(sp.info["source_graph"])
    res = chronological_split(g, ("user", "bought", "item"), fractions=(0.6, 0.2, 0.2), out=sp.path.parent / "s2",
                              cut_side_relations=False)
    assert res.train.relation(("user", "follows", "user")).num_edges == 60 and res.counts["side_cut"] == {}


def test_tied_scores_with_repeats_match_brute_force(repeat_split):
    """Repeats in the log and ties in the scores together: the protocol's targets and
    exclusions (from plain sets) fed to the tie-enumerating brute force of test_metrics."""
    from tests.eval.test_metrics import brute_force

    sp = repeat_split
    held, seen = _reference_sets(sp, "test")
    n_users, n_items = sp.train.num_nodes("user"), sp.train.num_nodes("item")
    scores = np.random.default_rng(3).integers(0, 40, (n_users, n_items)).astype(np.float32)
    users = sorted(held)[:25]
    targets = [sorted(held[u] - seen.get(u, set())) for u in users]
    excluded = [seen.get(u, set()) for u in users]
    ref, n = brute_force(scores[users], targets, excluded, (1, 5, 10))
    task = ranking_task(sp, "test", "new_items")
    task.users = np.intersect1d(task.users, users)
    st = torch.from_numpy(scores)
    got = evaluate_task(lambda u: st[u], task, ks=(1, 5, 10))
    assert got["users"] == n
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
