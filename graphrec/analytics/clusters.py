"""How well embeddings recover planted (or known) clusters.

- :func:`normalized_mutual_info`: ``NMI(a, b) = 2 I(a; b) / (H(a) + H(b))`` (arithmetic
  normalisation, as scikit-learn's default) from the contingency table of two labelings.
- :func:`kmeans_nmi`: k-means (FAISS, spherical: on L2-normalised vectors) with ``k`` =
  number of true clusters, scored by NMI against the true labels.
- :func:`neighbor_purity`: mean fraction of each node's top-``k`` inner-product
  neighbours (itself excluded) that share its true cluster.

Both are compared against a random-embedding baseline of the same shape by
:func:`cluster_recovery`.
"""

from __future__ import annotations

import numpy as np


def normalized_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """NMI of two labelings ``[N]`` (any hashable labels), in ``[0, 1]``."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"labelings of shapes {a.shape} and {b.shape}")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    n = a.shape[0]
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    pij = table / n
    pi, pj = pij.sum(1), pij.sum(0)
    nz = pij > 0
    mi = float((pij[nz] * np.log(pij[nz] / np.outer(pi, pj)[nz])).sum())
    ha = float(-(pi[pi > 0] * np.log(pi[pi > 0])).sum())
    hb = float(-(pj[pj > 0] * np.log(pj[pj > 0])).sum())
    if ha + hb == 0:
        return 1.0
    return max(0.0, 2 * mi / (ha + hb))


def kmeans_labels(emb: np.ndarray, k: int, seed: int = 0, niter: int = 25, nredo: int = 5) -> np.ndarray:
    """Spherical k-means assignments ``[N]`` (FAISS; best of ``nredo`` restarts) of the
    L2-normalised rows of ``emb``."""
    import faiss

    x = np.ascontiguousarray(emb, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=nredo, seed=seed, spherical=True, verbose=False)
    km.train(x)
    return km.index.search(x, 1)[1][:, 0]


def kmeans_nmi(emb: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """NMI between k-means clusters of ``emb`` (k = distinct ``labels``) and ``labels``."""
    return normalized_mutual_info(labels, kmeans_labels(emb, len(np.unique(labels)), seed))


def neighbor_purity(emb: np.ndarray, labels: np.ndarray, k: int = 10, max_queries: int = 10_000,
                    seed: int = 0) -> float:
    """Mean fraction of the top-``k`` inner-product neighbours (query excluded) sharing the
    query's label, over up to ``max_queries`` random queries."""
    import faiss

    x = np.ascontiguousarray(emb, dtype=np.float32)
    labels = np.asarray(labels)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    rng = np.random.default_rng(seed)
    q = np.arange(x.shape[0]) if x.shape[0] <= max_queries else np.sort(rng.choice(x.shape[0], max_queries, replace=False))
    _, nbr = index.search(x[q], k + 1)
    keep = (nbr != q[:, None]) & (nbr >= 0)
    same = (labels[np.maximum(nbr, 0)] == labels[q][:, None]) & keep
    return float((same.sum(1) / np.maximum(np.minimum(keep.sum(1), k), 1)).mean())


def cluster_recovery(emb: np.ndarray, labels: np.ndarray, k: int = 10, seed: int = 0) -> dict:
    """``{"nmi", "neighbor_purity@k"}`` of ``emb`` and of a Gaussian random embedding of the
    same shape (``random_*``), and the chance level of the purity (``Σ p_c²``)."""
    rng = np.random.default_rng(seed)
    rand = rng.standard_normal(emb.shape).astype(np.float32)
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return {"nmi": kmeans_nmi(emb, labels, seed), f"neighbor_purity@{k}": neighbor_purity(emb, labels, k, seed=seed),
            "random_nmi": kmeans_nmi(rand, labels, seed),
            f"random_neighbor_purity@{k}": neighbor_purity(rand, labels, k, seed=seed),
            "chance_purity": float((p ** 2).sum()), "clusters": int(len(counts)), "nodes": int(len(labels))}
