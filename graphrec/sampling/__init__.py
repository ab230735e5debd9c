"""Sampling on the graph store: positive-edge schedules, typed negatives, metapath
random walks, importance neighbourhoods and PinSage training data.

One module per job:

* :mod:`~graphrec.sampling.edges`: per-relation positive-edge batches (knowledge-graph training);
* :mod:`~graphrec.sampling.negatives`: negatives that respect node types;
* :mod:`~graphrec.sampling.walks`: metapath random walks and top-T importance neighbourhoods;
* :mod:`~graphrec.sampling.blocks`: re-indexed K-layer minibatch subgraphs;
* :mod:`~graphrec.sampling.features`: node features gathered as tensors;
* :mod:`~graphrec.sampling.positives`: co-engagement ``(query, positive)`` item pairs;
* :mod:`~graphrec.sampling.ppr`: personalized-PageRank hard negatives;
* :mod:`~graphrec.sampling.batches`: PinSage minibatches built by DataLoader workers.
"""

from graphrec.sampling.batches import (PinSageBatch, PinSageBatches, build_batch, collate_identity, table_neighborhood,
                                       walk_neighborhood)
from graphrec.sampling.blocks import Block, compact_blocks
from graphrec.sampling.edges import RelationBatchSchedule, RelationEdges
from graphrec.sampling.features import FeatureSpec, NodeFeatures, NodeFeatureTable
from graphrec.sampling.negatives import typed_negatives, uniform_typed_negatives
from graphrec.sampling.positives import CoEngagement, co_engagement_pairs
from graphrec.sampling.ppr import MetapathTransition, PPRHardNegatives, metapath_transition
from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, importance_neighbors, top_t_visits

__all__ = ["Block", "CoEngagement", "FeatureSpec", "ImportanceNeighborhoods", "MetapathTransition", "NodeFeatureTable",
           "NodeFeatures", "PPRHardNegatives", "PinSageBatch", "PinSageBatches", "RandomWalkSampler",
           "RelationBatchSchedule", "RelationEdges", "build_batch", "co_engagement_pairs", "collate_identity",
           "compact_blocks", "importance_neighbors", "metapath_transition", "table_neighborhood", "top_t_visits",
           "typed_negatives", "uniform_typed_negatives", "walk_neighborhood"]
