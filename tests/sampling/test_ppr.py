import numpy as np

from graphrec.sampling.ppr import PPRHardNegatives, metapath_transition
from graphrec.sampling.walks import RandomWalkSampler
from tests.sampling.conftest import PBP, PUP


def test_metapath_transition_is_row_stochastic(small_pins_graph):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 1.0)])
    m = metapath_transition(small_pins_graph, s)
    np.testing.assert_allclose(np.asarray(m.sum(1)).ravel(), 1.0, rtol=1e-9)


def test_ppr_power_iteration_solves_the_linear_system(hard):
    n = hard.num_nodes
    q = np.array([0, 11, 42])
    x = hard.ppr(q)
    p = metapath_transition(hard.store, hard.sampler).toarray()
    exact = hard.alpha * np.linalg.inv(np.eye(n) - (1 - hard.alpha) * p)[q]  # rows: α e_q (I - (1-α)P)^-1
    np.testing.assert_allclose(x, exact, atol=1e-4)
    np.testing.assert_allclose(x.sum(1), 1.0, atol=1e-6)


def test_hard_negatives_come_from_the_band_and_never_equal_the_positive(hard):
    rng = np.random.default_rng(0)
    q = rng.integers(0, hard.num_nodes, 300)
    ranking = hard.ranking(q)
    band = ranking[:, hard.lo : hard.hi]
    pos = band[:, 0].copy()  # the worst case: the positive sits inside the band
    neg = hard.sample(q, pos, 6, rng)
    assert neg.shape == (300, 6)
    assert (neg != pos[:, None]).all()
    for i in range(300):
        assert set(neg[i].tolist()) <= set(band[i].tolist())
    assert hard.lo == int(0.1 * hard.num_nodes) and hard.hi == int(np.ceil(0.3 * hard.num_nodes))


def test_monte_carlo_hard_negatives_never_equal_the_positive(small_pins_graph):
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0)], restart_prob=0.0)
    mc = PPRHardNegatives(small_pins_graph, s, band=(0.02, 0.1), method="montecarlo", mc_walks=50, mc_length=5)
    rng = np.random.default_rng(1)
    q = np.arange(0, 600, 3)
    pos = (q + 1) % 600
    neg = mc.sample(q, pos, 4, rng)
    assert (neg != pos[:, None]).all() and neg.min() >= 0 and neg.max() < 600


def test_a_band_from_rank_zero_never_gives_the_query_itself(hard):
    # band (0, 5%): without the rank-0 guard every 30th draw of the power table is the query
    near = PPRHardNegatives(hard.store, hard.sampler, band=(0.0, 0.05), alpha=hard.alpha, method="power")
    assert near.lo == 1
    rng = np.random.default_rng(2)
    q = rng.integers(0, near.num_nodes, 200)
    neg = near.sample(q, (q + 1) % near.num_nodes, 8, rng)
    assert (neg != q[:, None]).all()
    assert set(neg[0].tolist()) <= set(near.ranking(q[:1])[0, 1 : near.hi].tolist())


def test_monte_carlo_negatives_fall_in_the_exact_ppr_band(small_pins_graph):
    """Absolute ranks [20, 60) with walks that resolve them: most Monte-Carlo negatives
    lie in the band of the exact (power-iteration) ranking, and none is one of the
    query's top-10 items."""
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 1.0)], restart_prob=0.3)
    mc = PPRHardNegatives(small_pins_graph, s, ranks=(20, 60), alpha=0.3, method="montecarlo", mc_walks=400,
                          mc_length=10)
    exact = PPRHardNegatives(small_pins_graph, s, alpha=0.3, method="power")
    assert (mc.lo, mc.hi) == (20, 60) and mc.coverage(np.arange(0, 600, 5), np.random.default_rng(0)) == 1.0
    q = np.arange(0, 600, 20)
    neg = mc.sample(q, (q + 1) % 600, 20, np.random.default_rng(1))
    order = exact.ranking(q)
    rank = np.argsort(order, axis=1)[np.arange(q.shape[0])[:, None], neg]  # exact rank of each negative
    assert np.median(rank) >= 20 and np.median(rank) < 60
    assert ((rank >= 10) & (rank < 120)).mean() > 0.9 and (rank >= 1).all()


def test_ranks_beyond_the_walks_come_from_unvisited_items(small_pins_graph):
    """A band deeper than the walks reach: its ranks are drawn among the items the walks
    never visited (tied at zero), never among the visited ones; coverage says so."""
    from graphrec.sampling.walks import top_t_visits

    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0)], restart_prob=0.5)
    mc = PPRHardNegatives(small_pins_graph, s, ranks=(400, 500), method="montecarlo", mc_walks=5, mc_length=2)
    assert mc.coverage(np.arange(0, 600, 7), np.random.default_rng(0)) == 0.0
    q = np.arange(0, 600, 50)
    neg = mc.sample(q, (q + 1) % 600, 30, np.random.default_rng(3))
    visits = s.walk(q, 5, 2, np.random.default_rng(3))  # the same generator draws: the same walks
    top = top_t_visits(visits, visits.shape[1], exclude=q).neighbors
    for i in range(q.shape[0]):
        assert not set(neg[i].tolist()) & (set(top[i].tolist()) | {int(q[i])})
