"""Sampling on the graph store: positive-edge schedules and typed negatives."""

from graphrec.sampling.edges import RelationBatchSchedule, RelationEdges
from graphrec.sampling.negatives import typed_negatives, uniform_typed_negatives

__all__ = ["RelationBatchSchedule", "RelationEdges", "typed_negatives", "uniform_typed_negatives"]
