"""Node features gathered for minibatches: the store's encoded features as tensors.

:class:`NodeFeatureTable` reads a node type's features from the graph store once
(memory-mapped arrays) and :meth:`~NodeFeatureTable.gather` returns the
:class:`NodeFeatures` of any list of nodes, ready for an input layer: categorical codes,
multi-categorical / text token bags (``EmbeddingBag`` layout) and standardised numeric
values with missing-value indicators.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore


@dataclass
class FeatureSpec:
    """The features an input layer embeds: ``categorical`` and ``multi_categorical``
    (``{name: vocabulary size}``, text features count as multi-categorical bags) and
    ``numeric`` names, in a fixed order."""

    categorical: dict[str, int] = field(default_factory=dict)
    multi_categorical: dict[str, int] = field(default_factory=dict)
    numeric: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"categorical": dict(self.categorical), "multi_categorical": dict(self.multi_categorical),
                "numeric": list(self.numeric)}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(dict(d.get("categorical", {})), dict(d.get("multi_categorical", {})), list(d.get("numeric", [])))


@dataclass
class NodeFeatures:
    """Features of a list of ``n`` nodes, aligned with that list.

    ``categorical``: int64 ``[n, C]`` (one column per categorical feature, spec order);
    ``bags``: per multi-categorical feature ``(codes int64 [nnz], offsets int64 [n])``;
    ``numeric``: float32 ``[n, 2M]`` (M standardised values with NaN -> 0, then M
    missing-value indicators)."""

    categorical: Tensor
    bags: list[tuple[Tensor, Tensor]]
    numeric: Tensor


class NodeFeatureTable:
    """Features of one node type of a store (``names``: a subset; default all).

    ``reference``: the store a model was trained on. Codes are then translated to the
    reference's vocabularies by token (a category the reference never saw becomes code 0,
    the unknown bucket; an unseen token of a bag is dropped, as ``max_vocab`` drops
    rare ones) and numeric values standardised with the reference's mean and std, so a
    newer graph's nodes are encoded exactly as the model's training nodes were."""

    def __init__(self, store: GraphStore, node_type: str, names: list[str] | None = None,
                 reference: GraphStore | None = None):
        self.node_type = node_type
        self.num_nodes = store.num_nodes(node_type)
        names = store.feature_names(node_type) if names is None else list(names)
        self.spec = FeatureSpec()
        self._cat, self._bags, self._num = [], [], []
        for name in names:
            f = store.feature(node_type, name)
            ref = reference.feature(node_type, name) if reference is not None else f
            if ref.kind != f.kind:
                raise GraphrecError(f"{store.path}: feature {node_type}.{name} is {f.kind}, the model's graph "
                                    f"{reference.path} has it {ref.kind}")
            if f.kind == "categorical":
                self.spec.categorical[name] = ref.num_categories
                self._cat.append(np.asarray(f.codes) if ref is f else code_map(f.vocab, ref.vocab)[np.asarray(f.codes)])
            elif f.kind in ("multi_categorical", "text"):
                self.spec.multi_categorical[name] = ref.num_categories
                offsets, codes = np.asarray(f.offsets), np.asarray(f.codes)
                if ref is not f:
                    offsets, codes = _drop_zero_codes(offsets, code_map(f.vocab, ref.vocab)[codes])
                self._bags.append((offsets, codes))
            elif f.kind == "numeric":
                v = np.asarray(f.values, dtype=np.float32)
                rv = np.asarray(ref.values, dtype=np.float32)
                finite = rv[np.isfinite(rv)]
                mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 1.0
                self.spec.numeric.append(name)
                self._num.append((v, mean, std if std > 0 else 1.0))
            else:  # pragma: no cover - the schema allows no other kind
                raise ValueError(f"feature {node_type}.{name}: unsupported kind {f.kind!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.node_type!r}, nodes={self.num_nodes}, spec={self.spec})"

    def gather(self, nodes) -> NodeFeatures:
        """:class:`NodeFeatures` of ``nodes`` (int local ids ``[n]``)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        n = nodes.shape[0]
        cat = np.empty((n, len(self._cat)), dtype=np.int64)
        for j, codes in enumerate(self._cat):
            cat[:, j] = codes[nodes]
        bags = []
        for offsets, codes in self._bags:
            lo, hi = offsets[nodes], offsets[nodes + 1]
            lens = hi - lo
            bag_off = np.zeros(n, dtype=np.int64)
            np.cumsum(lens[:-1], out=bag_off[1:])
            # positions of every token of every node, vectorised: lo[row] + rank within row
            row = np.repeat(np.arange(n), lens)
            pos = lo[row] + (np.arange(row.shape[0]) - bag_off[row])
            bags.append((torch.from_numpy(codes[pos].astype(np.int64)), torch.from_numpy(bag_off)))
        num = np.zeros((n, 2 * len(self._num)), dtype=np.float32)
        m = len(self._num)
        for j, (v, mean, std) in enumerate(self._num):
            x = v[nodes]
            missing = ~np.isfinite(x)
            num[:, j] = np.where(missing, 0.0, (x - mean) / std)
            num[:, m + j] = missing
        return NodeFeatures(torch.from_numpy(cat), bags, torch.from_numpy(num))


def code_map(vocab: list[str], reference_vocab: list[str]) -> np.ndarray:
    """int32 ``[len(vocab)]``: code ``c`` of ``vocab`` -> the code of the same token in
    ``reference_vocab``, 0 (unknown) where the reference lacks it (code 0 maps to 0)."""
    idx = pc.index_in(pa.array(vocab[1:], pa.large_string()), value_set=pa.array(reference_vocab[1:], pa.large_string()))
    out = np.zeros(len(vocab), dtype=np.int32)
    out[1:] = np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype=np.int32) + 1
    return out


def _drop_zero_codes(offsets: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bag layout without its code-0 tokens."""
    keep = codes != 0
    row = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    new_off = np.zeros_like(offsets)
    np.cumsum(np.bincount(row[keep], minlength=offsets.shape[0] - 1), out=new_off[1:])
    return new_off, codes[keep]
