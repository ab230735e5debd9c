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
