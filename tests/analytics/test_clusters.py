import numpy as np
import pytest

from graphrec.analytics.clusters import cluster_recovery, kmeans_nmi, neighbor_purity, normalized_mutual_info


def test_nmi_hand_values():
    a = np.array([0, 0, 1, 1])
    assert normalized_mutual_info(a, np.array([5, 5, 7, 7])) == pytest.approx(1.0)  # relabelled
    assert normalized_mutual_info(a, np.array([0, 1, 0, 1])) == pytest.approx(0.0)  # independent
    # a = [0,0,0,1], b = [0,0,1,1]: I = 0.75 ln 1.5·... computed by hand from the table
    a, b = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    pij = np.array([[0.5, 0.25], [0.0, 0.25]])
    pi, pj = pij.sum(1), pij.sum(0)
    nz = pij > 0
    mi = (pij[nz] * np.log(pij[nz] / np.outer(pi, pj)[nz])).sum()
    h = lambda p: -(p * np.log(p)).sum()  # noqa: E731
    assert normalized_mutual_info(a, b) == pytest.approx(2 * mi / (h(pi) + h(pj)))


def test_planted_clusters_are_recovered_and_random_is_not():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 4000)
    centers = rng.standard_normal((8, 16)) * 3
    emb = (centers[labels] + rng.standard_normal((4000, 16))).astype(np.float32)
    r = cluster_recovery(emb, labels, k=10)
    assert r["nmi"] > 0.9 and r["neighbor_purity@10"] > 0.95
    assert r["random_nmi"] < 0.05 and abs(r["random_neighbor_purity@10"] - r["chance_purity"]) < 0.03
    assert kmeans_nmi(emb, labels, seed=0) == kmeans_nmi(emb, labels, seed=0)
    assert neighbor_purity(emb, labels, k=5, max_queries=100) > 0.9
