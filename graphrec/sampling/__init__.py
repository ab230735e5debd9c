"""Sampling on the graph store: random walks, importance neighbourhoods, negatives (to come)."""
