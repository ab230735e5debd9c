"""Encoding node feature columns into arrays, vectorised in Arrow.

Every encoder returns ``(arrays, vocab)`` where ``arrays`` maps a file suffix to a numpy
array (see :mod:`graphrec.graph.store` for the layout) and ``vocab`` is the code ->
token list (``None`` for numeric). Code 0 is reserved for missing/unknown tokens.
Vocabularies are ordered by frequency (descending), ties by token, so they are
deterministic and ``max_vocab`` keeps the most frequent tokens.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrec.errors import DataError, format_rows
from graphrec.graph.schema import Feature

log = logging.getLogger(__name__)

UNK = "<unk>"
_NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*(?i:nan|inf|-inf)\s*$"


def to_numeric(col: pa.ChunkedArray, where: str, invalid: str = "error") -> np.ndarray:
    """A numeric or numeric-string column as float64 (nulls -> NaN). Unparsable strings
    raise a clear error naming ``where`` (file and column) and the first offending rows,
    or become NaN with ``invalid="missing"``."""
    t = col.type
    if pa.types.is_null(t):  # a column with no values at all (CSV infers type null)
        return np.full(len(col), np.nan)
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _to_numpy(pc.fill_null(col.cast(pa.float64()), np.nan))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        ok = pc.or_kleene(pc.is_null(col), pc.match_substring_regex(col, _NUMBER_RE))
        ok = _to_numpy(ok).astype(bool)
        bad = np.flatnonzero(~ok)
        if bad.size and invalid == "missing":
            log.warning("%s: %d unparsable values read as missing, first at %s", where, bad.size,
                        format_rows(bad, col.take(pa.array(bad[:5])).to_pylist()))
            col = pc.if_else(pa.array(ok), col, pa.scalar(None, col.type))
        elif bad.size:
            vals = col.take(pa.array(bad[:5])).to_pylist()
            raise DataError(f"{where}: expected numbers, found {format_rows(bad, vals)}")
        return _to_numpy(pc.fill_null(pc.cast(pc.utf8_trim_whitespace(col), pa.float64()), np.nan))
    raise DataError(f"{where}: expected a numeric column, found type {t}")


def _to_numpy(arr) -> np.ndarray:
    return np.asarray(arr.to_numpy() if isinstance(arr, pa.ChunkedArray) else arr.to_numpy(zero_copy_only=False))


def _vocab_from_counts(tokens: pa.ChunkedArray | pa.Array, max_vocab: int | None) -> pa.Array:
    """Distinct non-null tokens ordered by (count desc, token asc), truncated."""
    if len(tokens) == 0:
        return pa.array([], type=pa.large_string())
    vc = pc.value_counts(tokens)
    values = vc.field("values")
    counts = vc.field("counts")
    tbl = pa.table({"v": values, "c": counts}).filter(pc.is_valid(values))
    tbl = tbl.sort_by([("c", "descending"), ("v", "ascending")])
    if max_vocab is not None:
        tbl = tbl.slice(0, max_vocab)
    return tbl.column("v").combine_chunks()


def _as_strings(col, where: str):
    t = col.type
    if pa.types.is_null(t):  # a column with no values at all (CSV infers type null)
        return col.cast(pa.large_string())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.large_string())
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return col.cast(pa.large_string())
    if pa.types.is_floating(t):
        # 1995.0 -> "1995" so float-typed integer categories read naturally
        f = col.cast(pa.float64())
        is_int = pc.equal(f, pc.floor(f))
        as_int = pc.cast(pc.if_else(is_int, f, None), pa.int64(), safe=False).cast(pa.large_string())
        return pc.coalesce(as_int, f.cast(pa.large_string()))
    if pa.types.is_dictionary(t):
        return col.cast(t.value_type).cast(pa.large_string())
    raise DataError(f"{where}: expected a token column, found type {t}")


def _codes(values, vocab: pa.Array) -> np.ndarray:
    """int32 codes: position in ``vocab`` + 1, 0 for null/unknown."""
    if len(values) == 0:
        return np.zeros(0, np.int32)
    idx = pc.fill_null(pc.index_in(values, value_set=vocab), -1)
    return _to_numpy(idx).astype(np.int32) + 1


def encode_categorical(col: pa.ChunkedArray, spec: Feature, where: str):
    if spec.buckets is not None:
        x = to_numeric(col, where, spec.invalid)
        bounds = np.asarray(spec.buckets, dtype=np.float64)
        codes = np.searchsorted(bounds, x, side="right").astype(np.int32) + 1
        codes[np.isnan(x)] = 0
        labels = [f"<{_fmt(bounds[0])}"]
        labels += [f"[{_fmt(a)},{_fmt(b)})" for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        labels += [f">={_fmt(bounds[-1])}"]
        return {".npy": codes}, [UNK, *labels]
    s = _as_strings(col, where)
    vocab = _vocab_from_counts(s, spec.max_vocab)
    return {".npy": _codes(s, vocab)}, [UNK, *vocab.to_pylist()]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _token_lists(col: pa.ChunkedArray, spec: Feature, where: str) -> pa.ListArray:
    t = col.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        try:
            return col.cast(pa.large_list(pa.large_string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(f"{where}: cannot read list elements of type {t.value_type} as tokens") from None
    s = _as_strings(col, where)
    if spec.kind == "text":
        lists = pc.split_pattern_regex(pc.utf8_lower(s), r"[^\w]+")
    elif spec.sep is None:
        lists = pc.utf8_split_whitespace(s)
    else:
        lists = pc.split_pattern(s, spec.sep)
    return lists


def encode_token_lists(col: pa.ChunkedArray, spec: Feature, where: str):
    lists = _token_lists(col, spec, where)
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    lists = lists.cast(pa.large_list(pa.large_string()))
    # null rows -> empty lists; drop empty tokens ("a  b", trailing separators)
    lists = pc.fill_null(lists, pa.scalar([], type=lists.type))
    row_of_token = pc.list_parent_indices(lists).to_numpy()
    tokens = pc.list_flatten(lists)
    keep = pc.and_(pc.is_valid(tokens), pc.not_equal(pc.utf8_length(tokens), 0))
    keep_np = keep.to_numpy(zero_copy_only=False)
    tokens = tokens.filter(keep)
    row_of_token = row_of_token[keep_np]
    vocab = _vocab_from_counts(tokens, spec.max_vocab)
    codes = _codes(tokens, vocab)
    if spec.max_vocab is not None:  # out-of-vocabulary tokens are dropped from the lists
        known = codes > 0
        codes, row_of_token = codes[known], row_of_token[known]
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of_token, minlength=len(lists)), out=offsets[1:])
    return {".offsets.npy": offsets, ".values.npy": codes}, [UNK, *vocab.to_pylist()]


def encode_numeric(col: pa.ChunkedArray, spec: Feature, where: str):
    return {".npy": to_numeric(col, where, spec.invalid).astype(np.float32)}, None


def encode_feature(col: pa.ChunkedArray, spec: Feature, where: str):
    """Encode one feature column; see the module docstring for the return value."""
    if spec.kind == "categorical":
        return encode_categorical(col, spec, where)
    if spec.kind == "numeric":
        return encode_numeric(col, spec, where)
    return encode_token_lists(col, spec, where)


def pad_feature(arrays: dict[str, np.ndarray], kind: str, extra: int) -> dict[str, np.ndarray]:
    """Extend feature arrays by ``extra`` nodes without features (code 0, NaN, empty)."""
    if extra == 0:
        return arrays
    if kind == "numeric":
        return {".npy": np.concatenate([arrays[".npy"], np.full(extra, np.nan, np.float32)])}
    if kind == "categorical":
        return {".npy": np.concatenate([arrays[".npy"], np.zeros(extra, np.int32)])}
    off = arrays[".offsets.npy"]
    return {".offsets.npy": np.concatenate([off, np.full(extra, off[-1], np.int64)]), ".values.npy": arrays[".values.npy"]}
