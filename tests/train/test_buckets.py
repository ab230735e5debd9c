"""The bucket scheduler (PyTorch-BigGraph's lock server): collisions, affinity, the
first-epoch order, failures, snapshots, and the Ray actor wrapper.

The property test drives random acquire / commit / fail sequences of several workers and
checks every answer against an independent statement of the rules (``_keys`` and
``_Model`` below), not against the scheduler's own helpers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrec.errors import GraphrecError
from graphrec.train.buckets import WAIT, BucketScheduler, SchedulerError, SchedulerStateError


def _keys(b, p_src, p_dst, same):
    """The rule: a side with one partition holds nothing; otherwise ("src", i) / ("dst", j),
    or ("node", i) / ("node", j) when both sides are the same node set."""
    keys = set()
    if p_src > 1:
        keys.add(("node" if same else "src", b[0]))
    if p_dst > 1:
        keys.add(("node" if same else "dst", b[1]))
    return keys


class _Model:
    """What the test knows independently: held, done, and the first-epoch initialised set."""

    def __init__(self, p_src, p_dst, same, first, pairs=False):
        self.p_src, self.p_dst, self.same, self.first = p_src, p_dst, same, first
        self.all = {(i, j) for i in range(p_src) for j in range(p_dst) if not pairs or i < j}
        self.held: dict[int, tuple] = {}
        self.done: list[tuple] = []

    def k(self, b):
        return _keys(b, self.p_src, self.p_dst, self.same)

    def side_keys(self, b):
        src = _keys((b[0], 0), self.p_src, 1, self.same)
        dst = _keys((0, b[1]), 1, self.p_dst, self.same)
        return src, dst

    def initialized(self):
        out = set()
        for b in self.done + list(self.held.values()):
            out |= self.k(b)
        return out

    def candidates(self, worker):
        locked = set().union(*(self.k(b) for w, b in self.held.items() if w != worker))
        init = self.initialized() if self.first else set()
        out = []
        for b in sorted(self.all - set(self.done) - set(self.held.values())):
            src, dst = self.side_keys(b)
            if self.k(b) & locked:
                continue
            if init and not (src <= init or dst <= init):
                continue
            out.append(b)
        return out


def _run(sched, model, actions, prev, failed_out, log):
    """Apply (worker, fail?) actions: a worker holding a bucket releases it (committed, or
    not when fail), else it acquires. Checks every answer against the model."""
    for worker, fail in actions:
        if worker in model.held:
            b = model.held.pop(worker)
            left = sched.release(worker, b, done=not fail)
            if fail:
                failed_out.append(b)
            else:
                model.done.append(b)
                prev[worker] = b
            assert left == len(model.all) - len(model.done)
            log.append(("release", worker, b, fail))
            continue
        cands = model.candidates(worker)
        nobody_holds = not model.held
        got = sched.acquire(worker, prev.get(worker))
        log.append(("acquire", worker, got))
        if len(model.done) == len(model.all):
            assert got is None
            continue
        if got is WAIT:
            assert not cands, f"WAIT although {cands} were acquirable"
            assert not nobody_holds, "deadlock: buckets remain, nobody holds one, yet WAIT"
            continue
        got = tuple(got)
        assert got in cands, f"{got} not acquirable (candidates {cands})"
        for w, b in model.held.items():  # never two held buckets sharing a partition
            assert not (model.k(got) & model.k(b)), (got, b, w)
        p = prev.get(worker)
        if p is not None and any(model.k(c) & model.k(p) for c in cands):
            assert model.k(got) & model.k(p), f"affinity: {got} shares nothing with {p} though {cands} do"
        model.held[worker] = got


def _drain(sched, model, n_workers, prev, log):
    """Workers commit and acquire round robin until the epoch is done."""
    for _ in range(4 * len(model.all) * n_workers + 8):
        if sched.is_epoch_done() and not model.held:
            return
        _run(sched, model, [(w, False) for w in range(n_workers)], prev, [], log)
    raise AssertionError("epoch did not finish")


@st.composite
def _setups(draw):
    same = draw(st.booleans())
    p_src = draw(st.integers(1, 5))
    p_dst = p_src if same else draw(st.integers(1, 4))
    pairs = same and p_src >= 2 and draw(st.booleans())
    workers = draw(st.integers(1, 4))
    actions = draw(st.lists(st.tuples(st.integers(0, workers - 1), st.integers(0, 5).map(lambda x: x == 0)),
                            max_size=60))
    snapshot_at = draw(st.integers(0, 60))
    return same, p_src, p_dst, workers, actions, snapshot_at, draw(st.integers(0, 2**16)), pairs


@settings(derandomize=True, max_examples=300, deadline=None)
@given(_setups())
def test_random_schedules_follow_the_lock_rules(setup):
    same, p_src, p_dst, workers, actions, snapshot_at, seed, pairs = setup
    sched = BucketScheduler(p_src, p_dst, seed, same_entities=same, pairs=pairs)
    for epoch in (0, 1):
        sched.new_epoch(epoch)
        model = _Model(p_src, p_dst, same, first=epoch == 0, pairs=pairs)
        prev: dict[int, tuple] = {}
        failed: list[tuple] = []
        log: list = []
        cut = min(snapshot_at, len(actions))
        _run(sched, model, actions[:cut], prev, failed, log)
        at_cut = len(log)

        # state round trip mid-epoch (through JSON): the copy answers the rest exactly alike
        copy = BucketScheduler.from_state(json.loads(json.dumps(sched.state())), requeue_held=False)
        assert copy.state() == sched.state()
        model_copy = _Model(p_src, p_dst, same, first=epoch == 0, pairs=pairs)
        model_copy.held, model_copy.done = dict(model.held), list(model.done)
        prev_copy, log_copy = dict(prev), []
        _run(copy, model_copy, actions[cut:], prev_copy, [], log_copy)
        _drain(copy, model_copy, workers, prev_copy, log_copy)

        _run(sched, model, actions[cut:], prev, failed, log)
        _drain(sched, model, workers, prev, log)
        assert log[at_cut:] == log_copy
        assert sched.state() == copy.state()

        # every bucket committed exactly once; every failed bucket handed out again later
        assert sorted(model.done) == sorted(model.all)
        assert sorted(sched.done()) == sorted(model.all) and len(sched.done()) == sched.num_buckets
        acquired = [e[2] for e in log if e[0] == "acquire" and isinstance(e[2], tuple)]
        for b in failed:
            assert acquired.count(b) >= 2
        stats = sched.stats()
        assert stats["failures"] == len(failed)
        assert sum(stats["done_per_worker"].values()) == sched.num_buckets
        assert stats["acquisitions"] == len(acquired)
        assert sched.acquire(0, None) is None


def test_collisions_between_different_node_sets():
    s = BucketScheduler(2, 2, same_entities=False, init_order=False)
    s.new_epoch(0)
    assert s.partitions((0, 1)) == {("src", 0), ("dst", 1)}
    assert s.acquire(0) in {(0, 0), (1, 1), (0, 1), (1, 0)}
    b0 = s.held()[0]
    b1 = s.acquire(1)
    assert b1 == (1 - b0[0], 1 - b0[1])  # the only bucket sharing neither partition
    assert s.acquire(2) is WAIT
    import pickle

    assert pickle.loads(pickle.dumps(WAIT)) is WAIT  # it crosses Ray (the coordinator actor) as itself


def test_collisions_within_one_node_set():
    s = BucketScheduler(3, 3, same_entities=True, init_order=False)
    s.new_epoch(0)
    assert s.partitions((1, 1)) == {("node", 1)} and s.partitions((0, 1)) == {("node", 0), ("node", 1)}
    assert s.acquire(0, previous_bucket=(1, 0)) in {(1, 0), (0, 1)}  # both cost no I/O
    assert s.acquirable(1) == [(2, 2)]  # (1, 0), (0, 2), (2, 1), ... all touch partition 0 or 1
    assert s.acquire(1) == (2, 2) and s.acquire(2) is WAIT


def test_unpartitioned_side_holds_nothing():
    s = BucketScheduler(3, 1, init_order=False)  # destination types shared by all buckets
    s.new_epoch(0)
    assert s.partitions((2, 0)) == {("src", 2)}
    got = {s.acquire(w) for w in range(3)}
    assert got == {(0, 0), (1, 0), (2, 0)}  # three workers at once


def test_affinity_prefers_shared_partition_then_transpose():
    s = BucketScheduler(4, 4, seed=3, same_entities=True, init_order=False)
    s.new_epoch(1)
    first = s.acquire(0)
    assert first[0] == first[1]  # from scratch: a diagonal bucket loads one partition
    s.release(0, first)
    second = s.acquire(0, previous_bucket=first)
    assert first[0] in second and second[0] != second[1]  # keeps the loaded partition
    s.release(0, second)
    assert s.acquire(0, previous_bucket=second) == second[::-1]  # the transpose: no I/O at all
    assert s.stats()["affinity_hits"] == 2 and s.stats()["acquisitions"] == 3


def test_partition_cost_keeps_the_expensive_side():
    # destination partitions 10x as costly to move: keep the destination, change the source
    s = BucketScheduler(3, 3, seed=0, init_order=False, partition_cost=(1.0, 10.0))
    s.new_epoch(1)
    b = (0, 0)
    for _ in range(3):
        b = s.acquire(0, previous_bucket=b)
        assert b[1] == 0
        s.release(0, b)
    assert s.done()[0] == (0, 0)  # what the worker has loaded costs nothing


def test_first_epoch_tree_order():
    s = BucketScheduler(4, 4, seed=5)
    s.new_epoch(0)
    first = s.acquire(0)
    i, j = first
    # a second worker: every acquirable bucket shares an initialised side, but those are held
    assert s.acquire(1) is WAIT
    s.release(0, first)
    b = s.acquire(1)
    assert b[0] == i or b[1] == j
    # the same sequence in a later epoch has no such constraint
    s2 = BucketScheduler(4, 4, seed=5)
    s2.new_epoch(3)
    assert s2.acquire(0) is not WAIT and s2.acquire(1) not in (WAIT, None)
    # nor does a first epoch with init_order=False or first=False
    s3 = BucketScheduler(4, 4, seed=5)
    s3.new_epoch(0, first=False)
    s3.acquire(0)
    assert s3.acquire(1) is not WAIT


def test_first_epoch_failure_uninitialises():
    s = BucketScheduler(3, 3, seed=1)
    s.new_epoch(0)
    b = s.acquire(0)
    s.release(0, b, done=False)  # nothing was written: nothing is initialised
    assert s.initialized_partitions() == frozenset()
    assert len(s.acquirable(1)) == 9


def test_failed_bucket_rerun_by_another_worker():
    s = BucketScheduler(1, 1)
    s.new_epoch(0)
    assert s.acquire(0) == (0, 0)
    assert s.acquire(1) is WAIT  # not None: the held bucket may still fail
    assert s.forget_worker(0) == (0, 0)
    assert s.acquire(1) == (0, 0)
    assert s.release(1, (0, 0)) == 0
    assert s.is_epoch_done() and s.acquire(0) is None
    assert s.stats()["done_per_worker"] == {1: 1} and s.stats()["failures"] == 1
    assert [e["event"] for e in s.events()] == ["acquire", "failed", "acquire", "done"]


def test_deterministic_given_seed():
    def order(seed):
        s = BucketScheduler(4, 4, seed)
        s.new_epoch(0)
        out, prev = [], None
        while (b := s.acquire(0, prev)) is not None:
            s.release(0, b)
            out.append(b)
            prev = b
        return out

    assert order(7) == order(7)
    assert sorted(order(7)) == sorted(order(8))
    assert order(7) != order(8)


def test_resume_requeues_held_and_keeps_committed():
    s = BucketScheduler(3, 3, seed=2, same_entities=True)
    s.new_epoch(0)
    committed = []
    for _ in range(3):
        b = s.acquire(0, committed[-1] if committed else None)
        s.release(0, b)
        committed.append(b)
    inflight = s.acquire(1, None)
    assert inflight not in (WAIT, None)
    snap = json.loads(json.dumps(s.state()))

    r = BucketScheduler.from_state(snap)  # whole job restarted: in-flight work is lost
    assert r.held() == {} and r.done() == committed and inflight in r.pending()
    assert r.remaining() == 6 and r.initialized_partitions() == set().union(*(r.partitions(b) for b in committed))
    seen = []
    prev = None
    while (b := r.acquire(5, prev)) is not None:
        assert b not in committed
        r.release(5, b)
        seen.append(b)
        prev = b
    assert inflight in seen and sorted(seen + committed) == r.buckets()

    kept = BucketScheduler.from_state(snap, requeue_held=False)
    assert kept.held() == {1: inflight}


def test_protocol_errors():
    s = BucketScheduler(2, 2)
    with pytest.raises(SchedulerError, match="before new_epoch"):
        s.acquire(0)
    s.new_epoch(0)
    b = s.acquire(0)
    with pytest.raises(SchedulerError, match="while holding"):
        s.acquire(0)
    with pytest.raises(SchedulerError, match="holds"):
        s.release(1, b)
    with pytest.raises(ValueError, match="out of range"):
        s.release(0, (2, 0))
    with pytest.raises(SchedulerError, match="while workers hold"):
        s.new_epoch(1)
    with pytest.raises(ValueError, match="integer rank"):
        s.acquire("w1")
    with pytest.raises(ValueError, match="same_entities"):
        BucketScheduler(2, 3, same_entities=True)
    with pytest.raises(ValueError, match=">= 1"):
        BucketScheduler(0, 3)
    with pytest.raises(ValueError, match="partition_cost"):
        BucketScheduler(2, 2, partition_cost=(1.0, 0.0))
    with pytest.raises(ValueError, match="pairs needs"):
        BucketScheduler(3, 3, pairs=True)
    p = BucketScheduler(3, 3, same_entities=True, pairs=True)
    assert p.buckets() == [(0, 1), (0, 2), (1, 2)] and p.num_buckets == 3
    p.new_epoch(0)
    with pytest.raises(ValueError, match="not a pair"):
        p.release(0, (1, 1))


def test_bad_state_is_one_clear_error():
    s = BucketScheduler(2, 2)
    s.new_epoch(0)
    s.release(0, s.acquire(0))
    good = s.state()
    bad = [({**good, "version": 9}, "version 9"),
           ({k: v for k, v in good.items() if k != "done"}, "missing key 'done'"),
           ({**good, "done": [[5, 0, 0]]}, "out of range"),
           ({**good, "done": good["done"] * 2}, "twice"),
           ({**good, "done": [], "held": [[1, 1, 1], [2, 1, 0]]}, "share partitions")]
    for state, msg in bad:
        with pytest.raises(SchedulerStateError, match=msg) as e:
            BucketScheduler.from_state(state)
        assert isinstance(e.value, GraphrecError) and "\n" not in str(e.value)
