"""Degree statistics and distributions per relation (numpy over the CSR; O(N + E))."""

from __future__ import annotations

import numpy as np

from graphrec.graph.store import GraphStore, RelationView


def degree_stats(degrees: np.ndarray) -> dict:
    """``{min, median, mean, max, zeros}`` of a degree array."""
    if degrees.size == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0, "zeros": 0}
    return {
        "min": int(degrees.min()),
        "median": float(np.median(degrees)),
        "mean": float(degrees.mean()),
        "max": int(degrees.max()),
        "zeros": int((degrees == 0).sum()),
    }


def degree_distribution(relation: RelationView, direction: str = "out") -> tuple[np.ndarray, np.ndarray]:
    """``(degree, count)``: how many nodes have each degree (degrees with count > 0).

    ``direction`` is ``"out"`` (sources) or ``"in"`` (destinations).
    """
    if direction not in ("out", "in"):
        raise ValueError("direction must be 'out' or 'in'")
    deg = relation.out_degree() if direction == "out" else relation.in_degree()
    counts = np.bincount(deg)
    present = np.flatnonzero(counts)
    return present, counts[present]


def powerlaw_exponent(degrees: np.ndarray, d_min: int = 1) -> float:
    """Maximum-likelihood power-law exponent (Clauset et al. 2009, discrete approx.):
    ``alpha = 1 + n / sum(ln(d / (d_min - 0.5)))`` over degrees ``d >= d_min``."""
    d = degrees[degrees >= d_min].astype(np.float64)
    if d.size == 0:
        return float("nan")
    return float(1.0 + d.size / np.log(d / (d_min - 0.5)).sum())


def graph_summary(store: GraphStore) -> dict:
    """Counts per node type and relation, with out/in-degree statistics (``graphrec info``)."""
    rels = []
    for rel in store.relations():
        rels.append({
            "relation": ":".join(rel.edge_type),
            "edges": rel.num_edges,
            "reverse": rel.is_reverse,
            "out_degree": degree_stats(rel.out_degree()),
            "in_degree": degree_stats(rel.in_degree()),
        })
    node_types = {
        t: {
            "count": store.num_nodes(t),
            "id_dtype": store.manifest["node_types"][t]["id_dtype"],
            "features": store.feature_names(t),
        }
        for t in store.node_types
    }
    return {
        "name": store.name,
        "checksum": store.checksum,
        "node_types": node_types,
        "relations": rels,
        "total_nodes": sum(n["count"] for n in node_types.values()),
        "total_edges": sum(r["edges"] for r in rels if not r["reverse"]),
    }
