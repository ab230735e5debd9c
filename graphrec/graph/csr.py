"""Compressed sparse row construction, vectorised in numpy.

A relation with ``E`` edges over ``N`` source nodes is stored as ``indptr`` (int64,
``[N + 1]``) and ``indices`` (int64, ``[E]``): the neighbours of node ``v`` are
``indices[indptr[v]:indptr[v + 1]]``.
"""

from __future__ import annotations

import numpy as np

_LOW32 = np.uint64(0xFFFFFFFF)


def stable_order(keys: np.ndarray, num_keys: int) -> np.ndarray:
    """Permutation that sorts ``keys`` (ints in ``[0, num_keys)``) stably, int64 ``[E]``.

    When ``E < 2**32`` and ``num_keys < 2**31`` the edge position is packed into the low
    32 bits of a uint64 (``key << 32 | position``) and one unstable ``np.sort`` of that
    array (SIMD-accelerated in numpy >= 2) gives the stable order; this is 3-5x faster
    than ``np.argsort(kind="stable")`` on int32/int64 keys.
    """
    e = keys.shape[0]
    if e < (1 << 32) and num_keys < (1 << 31):
        packed = keys.astype(np.uint64)
        packed <<= np.uint64(32)
        packed |= np.arange(e, dtype=np.uint64)
        packed.sort()
        packed &= _LOW32
        return packed.view(np.int64)
    return np.argsort(keys, kind="stable").astype(np.int64, copy=False)


def indptr_from_sorted_counts(keys: np.ndarray, num_keys: int) -> np.ndarray:
    """``indptr`` (int64 ``[num_keys + 1]``) of a CSR whose rows are ``keys``."""
    indptr = np.zeros(num_keys + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=num_keys), out=indptr[1:])
    return indptr


def build_csr(src: np.ndarray, dst: np.ndarray, num_src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the edges ``src[i] -> dst[i]`` grouped by source, stable in input order.

    Returns ``(indptr [num_src + 1], indices [E], perm [E])`` (all int64) with
    ``indices = dst[perm]``: ``perm`` maps CSR positions to input edge positions, so edge
    attributes follow with ``attr[perm]``.
    """
    if src.shape != dst.shape:
        raise ValueError(f"src and dst differ in shape: {src.shape} vs {dst.shape}")
    perm = stable_order(src, num_src)
    indptr = indptr_from_sorted_counts(src, num_src)
    indices = dst[perm].astype(np.int64, copy=False)
    return indptr, indices, perm


def expand_indptr(indptr: np.ndarray) -> np.ndarray:
    """Row id of every CSR position (the COO row array), int64 ``[E]``."""
    n = indptr.shape[0] - 1
    return np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))


def reverse_csr(indptr: np.ndarray, indices: np.ndarray, num_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the transposed relation grouped by destination.

    Returns ``(rev_indptr [num_dst + 1], rev_indices [E], rev_eid [E])``: ``rev_indices``
    are source ids and ``rev_eid`` the position of each reversed edge in the forward CSR.
    """
    return build_csr(np.asarray(indices), expand_indptr(indptr), num_dst)
