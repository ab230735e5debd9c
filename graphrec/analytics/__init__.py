"""Graph analytics over a store: degrees, components, PageRank, bipartite projections.

numpy/scipy.sparse for everything that must scale to 100M+ edges; networkx only where
it is used on a small, explicit subgraph (each function's docstring says which).
"""

from graphrec.analytics.degrees import degree_distribution, degree_stats, graph_summary, powerlaw_exponent
from graphrec.analytics.structure import (
    bipartite_projection_stats,
    connected_components,
    homogeneous_adjacency,
    pagerank_topk,
    projection_clustering,
)

__all__ = [
    "bipartite_projection_stats",
    "connected_components",
    "degree_distribution",
    "degree_stats",
    "graph_summary",
    "homogeneous_adjacency",
    "pagerank_topk",
    "powerlaw_exponent",
    "projection_clustering",
]
