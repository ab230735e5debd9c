from collections import Counter

import numpy as np
import pytest

from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, importance_neighbors, top_t_visits
from tests.sampling.conftest import PBP, PUP


def two_hop_sets(store, path):
    """{seed: set of nodes reachable along the metapath} by plain Python (reference)."""
    reach = {v: {v} for v in range(store.num_nodes(path[0].split(":")[0]))}
    for r in path:
        rel = store.relation(r)
        ip, ix = np.asarray(rel.indptr), np.asarray(rel.indices)
        reach = {s: {int(x) for v in cur for x in ix[ip[v]:ip[v + 1]]} for s, cur in reach.items()}
    return reach


def test_walks_follow_only_metapath_edges(small_pins_graph):
    store = small_pins_graph
    sampler = RandomWalkSampler(store, [(PUP, 1.0)], restart_prob=0.0)
    n2 = two_hop_sets(store, PUP)
    seeds = np.arange(0, store.num_nodes("pin"), 7)
    visits = sampler.walk(seeds, num_walks=5, walk_length=4, rng=np.random.default_rng(0))
    assert visits.shape == (seeds.size, 20)
    for i, s in enumerate(seeds):
        for w in range(5):
            prev = int(s)
            for v in visits[i, w * 4:(w + 1) * 4]:
                if v < 0:  # dead end: the walker goes back to its seed
                    prev = int(s)
                    continue
                assert int(v) in n2[prev], f"visit {v} is not a pin->user->pin neighbour of {prev}"
                prev = int(v)


def test_metapath_mix_uses_both_paths(small_pins_graph):
    store = small_pins_graph
    users_only = two_hop_sets(store, PUP)
    boards_only = two_hop_sets(store, PBP)
    sampler = RandomWalkSampler(store, [(PUP, 1.0), (PBP, 1.0)], restart_prob=0.99)
    seeds = np.arange(store.num_nodes("pin"))
    visits = sampler.walk(seeds, num_walks=20, walk_length=1, rng=np.random.default_rng(1))
    via_user = via_board = 0
    for s, row in zip(seeds, visits):
        for v in row[row >= 0]:
            assert v in users_only[s] or v in boards_only[s]
            via_user += v in users_only[s] and v not in boards_only[s]
            via_board += v in boards_only[s] and v not in users_only[s]
    assert via_user > 0 and via_board > 0


def test_restart_returns_to_seed(small_pins_graph):
    store = small_pins_graph
    n2 = two_hop_sets(store, PUP)
    seeds = np.arange(store.num_nodes("pin"))
    rng = np.random.default_rng(2)
    # restart 0.99: (almost) every round starts from the seed, so visits are 2-hop neighbours of it
    near = RandomWalkSampler(store, [(PUP, 1.0)], restart_prob=0.99).walk(seeds, 10, 5, rng)
    # restart 0: later rounds wander away from the seed
    far = RandomWalkSampler(store, [(PUP, 1.0)], restart_prob=0.0).walk(seeds, 10, 5, rng)

    def frac_near(v):
        ok = [x in n2[s] for s, row in zip(seeds, v) for x in row[row >= 0]]
        return np.mean(ok)

    assert frac_near(near) > 0.97
    assert frac_near(far) < frac_near(near) - 0.1
    # the first round of a walk always starts at the seed, whatever the restart probability
    first = far.reshape(seeds.size, 10, 5)[:, :, 0]
    assert all(x in n2[s] for s, row in zip(seeds, first) for x in row[row >= 0])


def test_dead_end_marks_minus_one_and_restarts(small_pins_graph):
    store = small_pins_graph
    sampler = RandomWalkSampler(store, [(PUP, 1.0)], restart_prob=0.0)
    deg = np.diff(np.asarray(store.relation("pin:saved_by:user").indptr))
    lonely = np.flatnonzero(deg == 0)
    if lonely.size == 0:
        pytest.skip("every pin is saved by someone in this graph")
    v = sampler.walk(lonely[:3], 2, 3, np.random.default_rng(0))
    assert (v == -1).all()


def test_bad_metapaths_are_rejected(small_pins_graph):
    with pytest.raises(ValueError, match="must return to"):
        RandomWalkSampler(small_pins_graph, [(["pin:saved_by:user"], 1.0)])
    with pytest.raises(ValueError, match="starts at"):
        RandomWalkSampler(small_pins_graph, [(["pin:saved_by:user", "board:has_pin:pin"], 1.0)])
    with pytest.raises(KeyError, match="unknown relation"):
        RandomWalkSampler(small_pins_graph, [(["pin:liked_by:user", "user:saves:pin"], 1.0)])


def brute_top_t(visits, t, exclude):
    out = []
    for row, ex in zip(visits, exclude):
        c = Counter(int(x) for x in row if x >= 0 and x != ex)
        ranked = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:t]
        total = sum(n for _, n in ranked)
        out.append([(node, n / total) for node, n in ranked])
    return out


@pytest.mark.parametrize("t", [1, 3, 10, 200])
def test_top_t_is_exact_against_brute_force(t):
    rng = np.random.default_rng(t)
    visits = rng.integers(-1, 40, size=(50, 120))
    visits[3] = -1  # a seed that never got anywhere
    exclude = rng.integers(0, 40, size=50)
    nb = top_t_visits(visits, t, exclude=exclude)
    ref = brute_top_t(visits, t, exclude)
    for i in range(50):
        got = [(int(n), float(w)) for n, w in zip(nb.neighbors[i], nb.weights[i]) if n >= 0]
        assert [n for n, _ in got] == [n for n, _ in ref[i]]
        np.testing.assert_allclose([w for _, w in got], [w for _, w in ref[i]], rtol=1e-6)
        assert (nb.neighbors[i, len(got):] == -1).all() and (nb.weights[i, len(got):] == 0).all()


def test_importance_weights_sum_to_one(small_pins_graph, tmp_path):
    sampler = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 0.5)], restart_prob=0.5)
    seeds = np.arange(small_pins_graph.num_nodes("pin"))
    nb = importance_neighbors(sampler, seeds, top_t=20, num_walks=30, walk_length=2,
                              rng=np.random.default_rng(0), chunk_seeds=128)
    assert nb.neighbors.shape == (seeds.size, 20)
    has = (nb.neighbors >= 0).any(1)
    np.testing.assert_allclose(nb.weights[has].sum(1), 1.0, rtol=1e-5)
    assert (nb.neighbors != seeds[:, None]).all()  # a seed is never its own neighbour
    # weights are sorted (most visited first) and zero exactly on padding
    assert (np.diff(nb.weights, axis=1) <= 1e-7).all()
    assert ((nb.weights > 0) == (nb.neighbors >= 0)).all()
    nb.save(tmp_path / "nbh")
    back = ImportanceNeighborhoods.load(tmp_path / "nbh")
    np.testing.assert_array_equal(back.neighbors, nb.neighbors)


def test_walks_are_deterministic_given_rng(small_pins_graph):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 1.0)], restart_prob=0.3, chunk=64)
    a = s.walk(np.arange(100), 4, 3, np.random.default_rng(5))
    b = s.walk(np.arange(100), 4, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_neighborhoods_roundtrip(tmp_path):
    nb = ImportanceNeighborhoods(np.array([[1, -1]]), np.array([[1.0, 0.0]], np.float32))
    nb.save(tmp_path)
    back = ImportanceNeighborhoods.load(tmp_path)
    assert back.neighbors.tolist() == [[1, -1]] and len(back) == 1


def test_reverse_steps_walk_a_relation_backwards(small_pins_graph):
    """``~src:name:dst`` walks from dst to src: pin -in_board-> board ~in_board~ pin equals
    the stored reverse view board -has_pin-> pin, walk for walk (same generator)."""
    from graphrec.sampling.ppr import metapath_transition
    from graphrec.sampling.walks import Step

    store = small_pins_graph
    backwards = RandomWalkSampler(store, [(["pin:in_board:board", "~pin:in_board:board"], 1.0)], restart_prob=0.3)
    stored = RandomWalkSampler(store, [(PBP, 1.0)], restart_prob=0.3)
    seeds = np.arange(0, store.num_nodes("pin"), 3)
    a = backwards.walk(seeds, 4, 3, np.random.default_rng(5))
    b = stored.walk(seeds, 4, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert (metapath_transition(store, backwards) != metapath_transition(store, stored)).nnz == 0
    step = Step.parse("~pin:in_board:board")
    assert step.reverse and (step.start, step.end) == ("board", "pin") and str(step) == "~pin:in_board:board"
    with pytest.raises(ValueError, match="pin:in_board:board ends at 'board' but pin:in_board:board starts at 'pin'"):
        RandomWalkSampler(store, [(["pin:in_board:board", "pin:in_board:board"], 1.0)])
