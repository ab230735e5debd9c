"""FAISS indexes over exported embeddings, with the metric the model scores by.

Every graphrec export ranks by inner product (``retrieval/<src>__<rel>__<dst>/`` holds
query and candidate vectors with ``dot(query, candidate)`` ≡ the model's score order;
``nodes/<type>.parquet`` are the node vectors themselves), so every index here answers
maximum-inner-product queries and returns inner-product scores, whatever FAISS metric it
searches under:

- ``flat``: exact (``IndexFlatIP``); ``kind="auto"`` picks it up to ``flat_max`` vectors
  and ``above`` (default ``ivf``) beyond;
- ``hnsw``: ``IndexHNSWFlat`` with ``M``, ``ef_construction`` / ``ef_search``, over raw
  inner products by default (``mips="auto"``);
- ``ivf``: ``IndexIVFFlat`` (or ``IndexIVFPQ`` with ``pq_m`` sub-quantisers) over the
  MIPS→L2 augmentation of the vectors by default (:class:`SearchIndex`; raw inner
  products for IVF-PQ without ``refine``, where the augmentation loses recall), with ``nlist``
  lists (default ``min(4·√N, N / 39)``) probed ``nprobe`` at a time, optionally with exact
  re-ranking of ``refine × k`` PQ candidates (``IndexRefineFlat``).

``mips="augment"`` / ``"raw"`` forces either form on both approximate kinds.

Builds stream the candidate Parquet file in chunks of ``chunk_size`` rows
(:func:`build_faiss`): IVF makes one pass for the largest norm and a seeded uniform
training sample of ``train_sample`` vectors, trains, and adds a chunk at a time, so its
peak memory is the sample + one chunk + the index (PQ codes for IVF-PQ; IVF-Flat and
``refine`` keep full vectors by design), not ``N × d`` floats (benchmarks/index_streaming.py). With ``N ≤ train_sample``
the sample is every vector and the index is exactly the one built from the whole array;
above, it differs from training on everything only by the sample. Flat and HNSW hold
every vector in the index anyway (HNSW is filled by one ``add``).

``INDEX_DIR`` holds ``index.faiss``, ``ids.parquet`` (row ``i`` = the original id of
FAISS label ``i``), ``vectors.npy`` (the indexed vectors, for item→item queries; written
chunk by chunk) and ``manifest.json`` (metric, dim, count, kind and parameters, the embedding directory and
file it came from, that export's model and graph checksum). Written to a temporary
sibling directory and renamed. Searches run on a GPU copy of a flat or IVF index when
faiss-gpu sees a CUDA device (``Index(gpu=False)`` keeps them on the CPU; FAISS has no
GPU HNSW).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field
from tqdm import tqdm

from graphrec.config_base import StrictConfig
from graphrec.errors import GraphrecError
from graphrec.graph.store import parse_edge_type
from graphrec.io import atomic_dir, portable_path

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
VECTORS_FILE = "vectors.npy"
MANIFEST = "manifest.json"


class IndexConfig(StrictConfig):
    """How to index (``kind="auto"``: ``flat`` up to ``flat_max`` vectors, else ``above``)."""

    kind: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto", description="flat: exact inner-product search; hnsw: graph index; ivf: inverted lists (optionally "
        "PQ-compressed); auto: flat up to flat_max vectors, else above")
    flat_max: int = Field(200_000, ge=0, description="auto: largest number of vectors indexed exactly (flat)")
    above: Literal["hnsw", "ivf"] = Field(
        "ivf", description="auto's kind above flat_max: IVF over the MIPS->L2 augmentation measured recall@10 "
                           "0.995 at 5k queries/s on 1.4M TwHIN vectors where raw inner-product HNSW plateaued at "
                           "0.81 (benchmarks/RESULTS.md)")
    hnsw_m: int = Field(32, ge=4, description="HNSW: neighbours per node (M); more is more accurate and larger")
    ef_construction: int = Field(200, ge=8, description="HNSW: candidate list size while building")
    ef_search: int = Field(128, ge=1, description="HNSW: candidate list size while searching (accuracy vs speed)")
    nlist: int | None = Field(None, ge=1, description="IVF lists (None: min(4·sqrt(N), N/39), at least 1)")
    nprobe: int = Field(32, ge=1, description="IVF: lists probed per query (accuracy vs speed)")
    pq_m: int | None = Field(None, ge=1, description="IVF-PQ sub-quantisers (None: IVF-Flat)")
    mips: Literal["auto", "augment", "raw"] = Field(
        "auto", description="approximate kinds: index the MIPS->L2 augmentation or raw inner products "
                            "(auto: augment for IVF-Flat and refined IVF-PQ, raw for HNSW and IVF-PQ without "
                            "refine — what measured best for each)")
    refine: int = Field(0, ge=0, description="IVF-PQ: re-rank k·refine PQ hits exactly (0: off)")
    train_sample: int | None = Field(
        None, ge=1000, description="IVF: vectors in the seeded uniform sample that trains the lists and PQ "
                                   "(None: max(200000, 39·nlist), as FAISS wants >= 39 per list; all vectors when "
                                   "fewer); the build holds only this sample and one chunk besides the index")
    chunk_size: int = Field(1 << 16, ge=1, description="vectors read from the Parquet file and added to the index "
                                                       "per step (memory: chunk_size x dim floats)")
    seed: int = Field(0, description="seed of the IVF training sample and k-means")


def _emb_manifest(emb_dir: Path) -> dict:
    path = emb_dir / "manifest.json"
    if not path.is_file():
        raise GraphrecError(f"{emb_dir}: not an embedding directory (no manifest.json; see `graphrec export`)")
    return json.loads(path.read_text())


def candidate_file(emb_dir: Path, target: str, query: str | None) -> Path:
    """The vectors to index: the candidate side of ``query``'s retrieval vectors, or the
    ``target`` node vectors."""
    man = _emb_manifest(emb_dir)
    if query is None:
        path = emb_dir / "nodes" / f"{target}.parquet"
        if not path.is_file():
            raise GraphrecError(f"{emb_dir}: no embeddings of node type {target!r} "
                                f"(has {sorted(man.get('node_counts', {}))})")
        return path
    retr = man.get("retrieval", {})
    if query not in retr:
        raise GraphrecError(f"--query {query}: {emb_dir} has no retrieval vectors for it "
                            f"(has {sorted(retr) or 'none'}; see `graphrec export --retrieval`)")
    try:
        _, _, candidate_type = parse_edge_type(query)
    except ValueError as err:
        raise GraphrecError(f"--query: {err}") from None
    if candidate_type != target:
        raise GraphrecError(f"--query {query}: its candidates are {candidate_type!r} nodes, not {target!r}")
    return emb_dir / retr[query]["path"] / "candidate.parquet"


def _gpu_available(faiss) -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class SearchIndex:
    """A FAISS index answering inner-product queries: ``search(q [n, d], k) -> (scores
    [n, k] inner products, rows [n, k])``.

    With ``max_norm`` set, the index holds the MIPS→nearest-neighbour reduction of
    Bachrach et al. (RecSys 2014): candidates ``c`` stored as ``[c, √(M² − ‖c‖²), 0…]``
    (``M`` = the largest candidate norm), queries searched as ``[q, 0, 0…]`` under L2, so
    ``‖q' − c'‖² = ‖q‖² + M² − 2 q·c`` — the L2 order *is* the inner-product order, and
    the scores are converted back. Clustering (IVF) indexes work well for L2 and badly
    for raw inner product when norms vary (popular items get long vectors: raw
    inner-product lists collect them), which is why IVF uses it by default; HNSW measured
    better on raw inner products (``IndexConfig.mips``). Without ``max_norm`` the index
    searches raw inner products and its scores are returned as they are.
    """

    def __init__(self, index, max_norm: float | None = None):
        self.index, self.max_norm = index, max_norm

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def augment_queries(self, q: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(q, dtype=np.float32)
        if self.max_norm is None:
            return q
        return np.ascontiguousarray(np.hstack([q, np.zeros((q.shape[0], self.index.d - q.shape[1]), np.float32)]))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, rows = self.index.search(self.augment_queries(q), k)
        if self.max_norm is None:
            return dist, rows
        qn = np.einsum("ij,ij->i", q, q, dtype=np.float64)[:, None]
        ip = ((qn + self.max_norm ** 2 - dist) / 2).astype(np.float32)
        return np.where(rows >= 0, ip, -np.inf).astype(np.float32), rows


def mips_augment(vectors: np.ndarray, multiple: int = 1) -> tuple[np.ndarray, float]:
    """``([c, √(M² − ‖c‖²), 0…] [N, d'], M)`` with ``d' ≥ d + 1`` a multiple of ``multiple``."""
    v = np.asarray(vectors, dtype=np.float32)
    norms2 = _norms2(v)
    m2 = float(norms2.max()) if v.shape[0] else 0.0
    return _augment(v, m2, _augmented_dim(v.shape[1], multiple), norms2), float(np.sqrt(m2))


def _norms2(v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", v, v, dtype=np.float64)


def _augmented_dim(d: int, multiple: int) -> int:
    return -(-(d + 1) // multiple) * multiple


def _augment(v: np.ndarray, m2: float, d_out: int, norms2: np.ndarray | None = None) -> np.ndarray:
    """``[v, √(m2 − ‖v‖²), 0…] [n, d_out]`` for a given squared max norm ``m2`` (so chunks
    of one set augment exactly as the whole set would)."""
    norms2 = _norms2(v) if norms2 is None else norms2
    out = np.zeros((v.shape[0], d_out), dtype=np.float32)
    out[:, : v.shape[1]] = v
    out[:, v.shape[1]] = np.sqrt(np.maximum(m2 - norms2, 0.0))
    return out


class ArrayVectors:
    """Vectors already in memory (``[N, d]``), served in chunks of ``chunk_size`` rows."""

    def __init__(self, vectors: np.ndarray, chunk_size: int = 1 << 16):
        self.vectors, self.chunk_size = vectors, chunk_size
        self.count, self.dim = int(vectors.shape[0]), int(vectors.shape[1])

    def chunks(self, ids: bool = False) -> Iterator[tuple[pa.Array | None, np.ndarray]]:
        """``(None, vectors [≤ chunk_size, d] float32)`` in row order."""
        for lo in range(0, self.count, self.chunk_size):
            yield None, np.ascontiguousarray(self.vectors[lo : lo + self.chunk_size], dtype=np.float32)


class ParquetVectors:
    """The ``(id, embedding)`` rows of an exported Parquet file (:mod:`graphrec.infer.export`),
    read in record batches of at most ``chunk_size`` rows, so memory holds one batch, never
    the file. ``count`` and ``dim`` come from the file's metadata and schema."""

    def __init__(self, path: str | Path, chunk_size: int = 1 << 16):
        self.path, self.chunk_size = Path(path), chunk_size
        try:
            # buffered page-by-page reads: without them a batch costs a whole decoded row group
            # (exports write ~64 MiB row groups, other writers up to 2^20 rows: 512 MiB at d=128),
            # with them about one batch
            self.file = pq.ParquetFile(self.path, buffer_size=1 << 20, pre_buffer=False)
        except (OSError, pa.ArrowException) as err:
            raise GraphrecError(f"{self.path}: not a readable Parquet file ({err})") from None
        schema = self.file.schema_arrow
        if "embedding" not in schema.names:
            raise GraphrecError(f"{self.path}: no 'embedding' column (has {schema.names}; see `graphrec export`)")
        emb = schema.field("embedding").type
        if not pa.types.is_fixed_size_list(emb) or not pa.types.is_floating(emb.value_type):
            raise GraphrecError(f"{self.path}: column 'embedding' is {emb}, expected fixed_size_list<float>")
        self.id_name = schema.names[0]
        self.count, self.dim = int(self.file.metadata.num_rows), int(emb.list_size)

    def chunks(self, ids: bool = True) -> Iterator[tuple[pa.Array | None, np.ndarray]]:
        """``(ids [b] | None, vectors [b, d] float32)``, ``b ≤ chunk_size``, in file order."""
        cols = [self.id_name, "embedding"] if ids else ["embedding"]
        for batch in self.file.iter_batches(batch_size=self.chunk_size, columns=cols):
            emb = batch.column("embedding")
            if emb.null_count or emb.flatten().null_count:
                raise GraphrecError(f"{self.path}: column 'embedding' has null values")
            v = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, self.dim)
            yield (batch.column(self.id_name) if ids else None), v


def _resolve_kind(cfg: IndexConfig, n: int) -> str:
    return cfg.kind if cfg.kind != "auto" else ("flat" if n <= cfg.flat_max else cfg.above)


def default_nlist(n: int) -> int:
    """``min(4·√N, N / 39)``, at least 1 (FAISS wants ≥ 39 training points per list)."""
    return max(1, min(n // 39, int(4 * np.sqrt(n))))


def train_count(cfg: IndexConfig, n: int, nlist: int) -> int:
    """Training vectors of an IVF index over ``n`` vectors: ``cfg.train_sample``, by
    default ``max(200,000, 39·nlist)`` (FAISS k-means wants ≥ 39 points per list and
    samples at most 256 per list itself), never more than ``n``."""
    want = cfg.train_sample if cfg.train_sample is not None else max(200_000, 39 * nlist)
    return min(n, want)


Sink = Callable[[pa.Array | None, np.ndarray], None]


def _add_all(index, source, sink: Sink | None, transform=None, bar=None) -> None:
    for ids, v in source.chunks(ids=sink is not None):
        index.add(v if transform is None else transform(v))
        if sink is not None:
            sink(ids, v)
        if bar is not None:
            bar.update(v.shape[0])


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="vec", unit_scale=True, disable=not enabled, leave=False)


def build_faiss(source: ArrayVectors | ParquetVectors, cfg: IndexConfig, sink: Sink | None = None,
                progress: bool = False) -> tuple[SearchIndex, dict]:
    """A trained, filled FAISS index answering inner-product queries over the vectors of
    ``source`` (labels 0..N-1 in its row order), and the parameters used. ``sink(ids,
    vectors)`` sees every chunk once, in order (to write them beside the index).

    ``flat`` is exact inner product, filled chunk by chunk. The approximate kinds index raw
    inner products or the MIPS→L2 augmentation (see :class:`SearchIndex`; ``cfg.mips``).
    HNSW holds every vector anyway and is filled by one ``add`` (its graph depends on the
    insertion batches), so it reads them all. IVF streams in bounded memory — two passes:

    1. the largest squared norm ``M²`` (for the augmentation) and a seeded uniform sample of
       :func:`train_count` rows (all rows when ``N`` is at most that, so small inputs give
       exactly the in-memory result);
    2. train on the (augmented) sample, then ``add`` one chunk at a time.

    Peak memory: the training sample (``train × (d+1)`` floats) + one chunk + the index
    itself (PQ codes for IVF-PQ; IVF-Flat and ``refine`` keep full vectors by design).
    """
    import faiss

    n, d = source.count, source.dim
    kind = _resolve_kind(cfg, n)
    params: dict = {"kind": kind}
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        with _progress(n, "index (flat)", progress) as bar:
            _add_all(index, source, sink, bar=bar)
        return SearchIndex(index), params
    # auto: the augmentation for IVF-Flat and refined IVF-PQ; raw inner products for HNSW and
    # for IVF-PQ without re-ranking, where PQ error in the large extra coordinate drowns
    # the score differences (recall@10 0.53 augmented vs 0.77 raw, tests/retrieval)
    augment = cfg.mips == "augment" or (cfg.mips == "auto" and kind == "ivf" and not (cfg.pq_m and not cfg.refine))
    multiple = cfg.pq_m if (kind == "ivf" and cfg.pq_m) else 1
    if not augment and cfg.pq_m and d % cfg.pq_m:
        raise GraphrecError(f"pq_m={cfg.pq_m} must divide the dimension {d}")
    da = _augmented_dim(d, multiple) if augment else d
    metric = faiss.METRIC_L2 if augment else faiss.METRIC_INNER_PRODUCT
    if kind == "hnsw":
        parts = [np.empty((0, d), np.float32)]
        with _progress(n, "read (hnsw)", progress) as bar:
            for ids, v in source.chunks(ids=sink is not None):
                parts.append(v)
                if sink is not None:
                    sink(ids, v)
                bar.update(v.shape[0])
        vectors = np.concatenate(parts) if len(parts) > 2 else parts[-1]
        del parts
        x, max_norm = mips_augment(vectors, multiple) if augment else (vectors, None)
        index = faiss.IndexHNSWFlat(da, cfg.hnsw_m, metric)
        index.hnsw.efConstruction = cfg.ef_construction
        index.hnsw.efSearch = cfg.ef_search
        index.add(np.ascontiguousarray(x, dtype=np.float32))
        params.update(mips="augment" if augment else "raw", mips_max_norm=max_norm, index_dim=da,
                      M=cfg.hnsw_m, ef_construction=cfg.ef_construction, ef_search=cfg.ef_search)
        return SearchIndex(index, max_norm), params

    nlist = cfg.nlist or default_nlist(n)
    n_train = train_count(cfg, n, nlist)
    rng = np.random.default_rng(cfg.seed)
    rows = None if n_train >= n else np.sort(rng.choice(n, n_train, replace=False))
    # pass 1: M² over all vectors and the training sample (its augmentation column filled
    # in once M is known, in place: the sample is held once)
    m2, sample, filled, start = 0.0, np.zeros((n_train, da), np.float32), 0, 0
    with _progress(n, "index: norms + sample", progress) as bar:
        for _, v in source.chunks(ids=False):
            if augment and v.shape[0]:
                m2 = max(m2, float(_norms2(v).max()))
            stop = start + v.shape[0]
            if rows is None:
                take = v
            else:
                lo, hi = np.searchsorted(rows, [start, stop])
                take = v[rows[lo:hi] - start]
            sample[filled : filled + take.shape[0], :d] = take
            filled, start = filled + take.shape[0], stop
            bar.update(v.shape[0])
    if start != n or filled != n_train:
        raise GraphrecError(f"{getattr(source, 'path', 'vectors')}: read {start} rows, expected {n}")
    max_norm = float(np.sqrt(m2)) if augment else None
    transform = (lambda v: _augment(v, m2, da)) if augment else None
    quantizer = faiss.IndexFlatL2(da) if augment else faiss.IndexFlatIP(da)
    if cfg.pq_m:
        index = faiss.IndexIVFPQ(quantizer, da, nlist, cfg.pq_m, 8, metric)
    else:
        index = faiss.IndexIVFFlat(quantizer, da, nlist, metric)
    index.cp.seed = cfg.seed
    t0 = time.perf_counter()
    if augment:
        sample[:, d] = np.sqrt(np.maximum(m2 - _norms2(sample[:, :d]), 0.0))
    index.train(sample)
    del sample
    log.info("trained IVF%s (nlist %d) on %d of %d vectors in %.1fs", f"-PQ{cfg.pq_m}" if cfg.pq_m else "-Flat",
             nlist, n_train, n, time.perf_counter() - t0)
    index.nprobe = cfg.nprobe
    params.update(mips="augment" if augment else "raw", mips_max_norm=max_norm, index_dim=da, nlist=nlist,
                  nprobe=cfg.nprobe, pq_m=cfg.pq_m, refine=cfg.refine if cfg.pq_m else 0, train_vectors=n_train)
    if cfg.pq_m and cfg.refine:  # exact re-ranking of the compressed hits (keeps full vectors too)
        index = faiss.IndexRefineFlat(index)
        index.k_factor = float(cfg.refine)
    # pass 2: add chunk by chunk (labels implicit in row order)
    with _progress(n, "index: add", progress) as bar:
        _add_all(index, source, sink, transform, bar)
    return SearchIndex(index, max_norm), params


def make_index(vectors: np.ndarray, cfg: IndexConfig) -> tuple[SearchIndex, dict]:
    """:func:`build_faiss` over vectors in memory (``[N, d]``, labels 0..N-1).

    Measured (tests/retrieval, benchmarks/inference.py): IVF's k-means lists need the
    MIPS→L2 augmentation when norms vary (raw inner-product lists collect the long
    vectors), while HNSW navigates raw inner products better than the augmented sphere."""
    return build_faiss(ArrayVectors(vectors, cfg.chunk_size), cfg)


class _IndexFiles:
    """The sink that writes ``ids.parquet`` and ``vectors.npy`` chunk by chunk. The ``.npy``
    file is created (header, size) by ``np.lib.format.open_memmap``, but the chunks go
    through the file, not the mapping: written pages are then the kernel's page cache, not
    this process's resident memory, so the build stays bounded however large ``N × d``."""

    def __init__(self, tmp: Path, count: int, dim: int):
        self.tmp, self.count, self.dim, self.rows = tmp, count, dim, 0
        created = np.lib.format.open_memmap(tmp / VECTORS_FILE, mode="w+", dtype=np.float32, shape=(count, dim))
        offset = created.offset
        del created
        self._npy = open(tmp / VECTORS_FILE, "r+b")  # noqa: SIM115 (closed by close())
        self._npy.seek(offset)
        self.ids: pq.ParquetWriter | None = None

    def __call__(self, ids: pa.Array, vectors: np.ndarray) -> None:
        if self.rows + vectors.shape[0] > self.count:
            raise GraphrecError(f"more rows than the {self.count} the vector file's metadata declares")
        if self.ids is None:
            id_type = pa.string() if pa.types.is_large_string(ids.type) else ids.type
            self.ids = pq.ParquetWriter(self.tmp / IDS_FILE, pa.schema([("id", id_type)]))
        self.ids.write_table(pa.table({"id": ids.cast(self.ids.schema.field("id").type)}, schema=self.ids.schema))
        self._npy.write(np.ascontiguousarray(vectors, dtype=np.float32).data)
        self.rows += vectors.shape[0]

    def close(self) -> None:
        if self.ids is not None:
            self.ids.close()
        self._npy.close()


def build_index(emb_dir: str | Path, target: str, out: str | Path, query: str | None = None,
                cfg: IndexConfig | None = None, overwrite: bool = False, progress: bool = False) -> dict:
    """Index the ``target`` vectors of an embedding directory (the candidate side of
    ``query``'s retrieval vectors when given); returns the index manifest.

    The Parquet file is streamed in chunks of ``cfg.chunk_size`` rows (:func:`build_faiss`):
    IVF kinds never hold all vectors in memory (``vectors.npy`` and ``ids.parquet`` are
    written chunk by chunk as they are added)."""
    import faiss

    emb_dir, cfg = Path(emb_dir), cfg or IndexConfig()
    src = candidate_file(emb_dir, target, query)
    source = ParquetVectors(src, cfg.chunk_size)
    if source.count == 0:
        raise GraphrecError(f"{src}: no vectors to index")
    man = _emb_manifest(emb_dir)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        t0 = time.perf_counter()
        files = _IndexFiles(tmp, source.count, source.dim)
        try:
            index, params = build_faiss(source, cfg, sink=files, progress=progress)
        finally:
            files.close()
        if files.rows != source.count:
            raise GraphrecError(f"{src}: read {files.rows} rows, its metadata says {source.count}")
        faiss.write_index(index.index, str(tmp / INDEX_FILE))
        manifest = {"format": "graphrec-index", "format_version": 1, "metric": "inner_product",
                    "dim": source.dim, "count": source.count, "target": target, "query": query, **params,
                    "embeddings": str(emb_dir.resolve()),
                    "embeddings_relpath": portable_path(emb_dir, out)["relpath"],
                    "vectors": str(src.relative_to(emb_dir)),
                    "embeddings_model": man.get("model"), "graph_checksum": man.get("graph_checksum"),
                    # the score the candidate vectors come from (item→item and session queries)
                    "score": man.get("score") if query else None,
                    "build_seconds": time.perf_counter() - t0, "faiss": faiss.__version__}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    log.info("indexed %d %s vectors (dim %d, %s) in %.1fs -> %s", source.count, target, source.dim,
             params["kind"], manifest["build_seconds"], out)
    return manifest


class IdPositions:
    """Positions of original ids in an id column (``int64`` or strings). Query ids typed
    as text (from a command line, a text file or a URL) match integer ids by their decimal
    form, so ``"42"`` finds ``42``. One hash lookup per query id (the column's hash table
    is built once), so a single-id call costs microseconds whatever the column's size."""

    def __init__(self, ids: np.ndarray):
        import pandas as pd

        self.ids = ids
        self._integer = ids.dtype.kind in "iu"
        # object dtype, not pandas' Arrow-backed "str": get_indexer on an Arrow index
        # converts the whole column to NumPy on every call
        self._index = pd.Index(ids if self._integer else np.asarray(ids, dtype=object), dtype=None
                               if self._integer else object)

    def __call__(self, query) -> tuple[np.ndarray, np.ndarray]:
        query = np.asarray(query)
        if self._integer and query.dtype.kind not in "iu":
            query, ok = _decimal_ints(query)
            rows = self._index.get_indexer(query)
            rows[~ok] = -1
        elif not self._integer:
            rows = self._index.get_indexer(query.astype(str).astype(object))
        else:
            rows = self._index.get_indexer(query)
        return rows, rows >= 0


def _decimal_ints(query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int64 values, parsed)`` of text ids: an optional ``-`` and up to 18 digits
    parse, anything else does not (value 0)."""
    text = query.astype(str)
    body = np.where(np.char.startswith(text, "-"), np.char.lstrip(text, "-"), text)
    ok = np.char.isdigit(body) & (np.char.str_len(body) <= 18) & (np.char.str_len(text) - np.char.str_len(body) <= 1)
    out = np.zeros(text.shape[0], dtype=np.int64)
    out[ok] = text[ok].astype(np.int64)
    return out, ok


class Index:
    """A built index, read from ``index_dir``: ``search(vectors, k) -> (scores [n, k],
    rows [n, k])`` (index rows; ``ids[rows]`` are the original ids), ``lookup(ids) ->
    (rows, known)``, ``ids`` ``[count]`` and ``vectors`` ``[count, dim]`` (memory-mapped).
    ``gpu``: ``None`` uses a GPU when faiss-gpu sees one (not for HNSW), ``True``
    requires one, ``False`` stays on the CPU."""

    def __init__(self, index_dir: str | Path, gpu: bool | None = None):
        import faiss

        self.dir = Path(index_dir)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise GraphrecError(f"{self.dir}: not an index directory (no {MANIFEST}; see `graphrec index`)")
        self.manifest = json.loads(path.read_text())
        self.dim, self.count = int(self.manifest["dim"]), int(self.manifest["count"])
        self.index = faiss.read_index(str(self.dir / INDEX_FILE))  # the raw FAISS index
        if self.manifest["kind"] == "hnsw":
            self.index.hnsw.efSearch = self.manifest["ef_search"]
        elif self.manifest["kind"] == "ivf":
            faiss.extract_index_ivf(self.index).nprobe = self.manifest["nprobe"]
        self.on_gpu = False
        if gpu and not _gpu_available(faiss):
            raise GraphrecError("a GPU index was asked for but faiss-gpu sees no CUDA device")
        if gpu and self.manifest["kind"] == "hnsw":
            raise GraphrecError(f"{self.dir}: FAISS has no GPU HNSW; build a flat or ivf index for GPU search")
        if gpu is not False and _gpu_available(faiss) and self.manifest["kind"] != "hnsw":
            self._res = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._res, 0, self.index)
            self.on_gpu = True
        self._searcher = SearchIndex(self.index, self.manifest.get("mips_max_norm"))
        self.ids = pq.read_table(self.dir / IDS_FILE).column("id").to_numpy(zero_copy_only=False)
        self.vectors = np.load(self.dir / VECTORS_FILE, mmap_mode="r")
        self._pos = self._score = None

    def __repr__(self) -> str:
        return f"Index({self.dir}, {self.manifest['kind']}, count={self.count}, dim={self.dim})"

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """``(rows [n] int64, known [n] bool)``: index rows of the original ``ids`` (``-1``
        where unknown) and a mask of those found (see :class:`IdPositions`)."""
        if self._pos is None:
            self._pos = IdPositions(self.ids)
        return self._pos(ids)

    def check_dim(self, vectors: np.ndarray, what: str) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise GraphrecError(f"{what}: query vectors of dimension {vectors.shape[-1]} for an index of dimension "
                                f"{self.dim} ({self.dir}, built from {self.manifest['embeddings']})")

    def item_queries(self, vectors: np.ndarray) -> np.ndarray:
        """Query vectors ``[n, dim]`` that find the items most like ``vectors`` (``[n, dim]``
        rows of :attr:`vectors`, or weighted means of them): the vectors themselves, except
        over candidate vectors of a score whose candidate side is not the node vector
        (TransE: :meth:`~graphrec.models.scores.ScoreFunction.candidate_queries`)."""
        score = self.manifest.get("score")
        if score in (None, "dot"):
            return np.asarray(vectors, dtype=np.float32)
        import torch

        if self._score is None:
            from graphrec.models.scores import make_score

            # p = 2: the only TransE with an inner-product form, hence with exported candidates
            self._score = make_score(score, p=2)
        return self._score.candidate_queries(torch.from_numpy(np.asarray(vectors, dtype=np.float32))).numpy()

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``min(k, count)`` by inner product: ``(scores [n, k] float32, rows [n, k]
        int64)`` index rows (``ids[rows]`` the original ids; ``-1`` rows, whose scores
        mean nothing, where an approximate index finds fewer)."""
        self.check_dim(vectors, "search")
        return self._searcher.search(np.asarray(vectors, dtype=np.float32), min(k, self.count))
