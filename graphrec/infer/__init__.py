"""Layer-wise (MapReduce-style) inference and embedding export (to come)."""
