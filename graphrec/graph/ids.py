"""Original id -> internal id lookup for one node type, vectorised.

Integer ids whose span ``max - min`` is at most ``DENSE_FACTOR`` times their count use
a direct-address table (int32, one gather per lookup); other integer ids and strings use
Arrow's hash lookup (``pyarrow.compute.index_in``). Both return int64 with ``-1`` for
unknown ids. Lookups release the GIL, so the builder maps both endpoint columns of a
relation concurrently.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DENSE_FACTOR = 8
DENSE_MAX_SPAN = 1 << 30


def _to_numpy_int64(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            values = values.chunk(0)
        else:
            values = values.combine_chunks()
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


class IdIndex:
    """Lookup table over the ids ``ids`` (Arrow int64 or large_string) of one node type;
    ``dense=False`` forces the hash lookup."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray, dense: bool = True):
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        self.ids = ids
        self.size = len(ids)
        self._table = None
        if dense and pa.types.is_integer(ids.type) and self.size:
            arr = _to_numpy_int64(ids)
            lo, hi = int(arr.min()), int(arr.max())
            span = hi - lo + 1
            if span <= max(DENSE_FACTOR * self.size, 1 << 16) and span <= DENSE_MAX_SPAN:
                table = np.full(span, -1, dtype=np.int32 if self.size < np.iinfo(np.int32).max else np.int64)
                table[arr - lo] = np.arange(self.size, dtype=table.dtype)
                self._table, self._lo = table, lo

    @property
    def kind(self) -> str:
        return "dense" if self._table is not None else "hash"

    def lookup(self, values: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Internal ids (int64 ``[len(values)]``), ``-1`` where a value is not an id."""
        if len(values) == 0:
            return np.zeros(0, dtype=np.int64)
        if self.size == 0:
            return np.full(len(values), -1, dtype=np.int64)
        if self._table is not None:
            v = _to_numpy_int64(values)
            r = v - self._lo
            span = self._table.shape[0]
            if int(r.min()) >= 0 and int(r.max()) < span:
                return self._table.take(r).astype(np.int64, copy=False)
            ok = (r >= 0) & (r < span)
            out = np.full(v.shape[0], -1, dtype=np.int64)
            out[ok] = self._table.take(r[ok])
            return out
        idx = pc.index_in(values, value_set=self.ids)
        idx = pc.fill_null(idx, -1)
        if isinstance(idx, pa.ChunkedArray):
            return np.concatenate([np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.int64) for c in idx.chunks]) \
                if idx.num_chunks else np.zeros(0, np.int64)
        return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)
