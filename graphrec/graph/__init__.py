"""Heterogeneous graph: schema, table sources, builder, store, conversions."""

from graphrec.graph.builder import build_graph
from graphrec.graph.schema import GraphSchema, load_schema, parse_schema, triples_schema
from graphrec.graph.store import GraphStore, RelationView, parse_edge_type

__all__ = [
    "GraphSchema",
    "GraphStore",
    "RelationView",
    "build_graph",
    "load_schema",
    "parse_schema",
    "parse_edge_type",
    "triples_schema",
]
