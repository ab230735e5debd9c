"""Sampling on the graph store: positive-edge schedules, typed negatives, metapath
random walks, importance neighbourhoods and PinSage minibatches."""

from graphrec.sampling.blocks import Block, compact_blocks
from graphrec.sampling.edges import RelationBatchSchedule, RelationEdges
from graphrec.sampling.features import FeatureSpec, NodeFeatures, NodeFeatureTable
from graphrec.sampling.negatives import typed_negatives, uniform_typed_negatives
from graphrec.sampling.pinsage import (CoEngagement, PinSageBatch, PinSageBatches, PPRHardNegatives,
                                      co_engagement_pairs)
from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, importance_neighbors, top_t_visits

__all__ = ["Block", "CoEngagement", "FeatureSpec", "ImportanceNeighborhoods", "NodeFeatureTable", "NodeFeatures", "PPRHardNegatives",
           "PinSageBatch", "PinSageBatches", "RandomWalkSampler", "RelationBatchSchedule", "RelationEdges",
           "co_engagement_pairs", "compact_blocks", "importance_neighbors", "top_t_visits", "typed_negatives",
           "uniform_typed_negatives"]
