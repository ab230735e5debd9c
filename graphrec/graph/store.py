"""The graph store: a directory of memory-mappable ``.npy`` arrays plus ``manifest.json``.

Layout::

    GRAPH_DIR/
      manifest.json                          schema, counts, per-array dtype/shape/sha256,
                                             per-node-type directory, per-relation key
      nodes/<T>/ids.npy                      original ids, int64        (integer ids)
      nodes/<T>/ids.offsets.npy              original ids, Arrow layout (string ids):
      nodes/<T>/ids.bytes.npy                  int64 offsets [N+1] + uint8 utf-8 bytes
      nodes/<T>/features/<F>.npy             categorical: int32 codes [N] (0 = unknown)
                                             numeric: float32 [N] (NaN = missing)
      nodes/<T>/features/<F>.offsets.npy     multi_categorical / text: int64 [N+1]
      nodes/<T>/features/<F>.values.npy        and int32 codes [nnz]
      nodes/<T>/features/<F>.vocab.json      code -> token (code 0 is "<unk>")
      relations/<K>/
        indptr.npy                           CSR by source, int64 [num_src + 1]
        indices.npy                          destination ids [E], int32 or int64 (below)
        rev_indptr.npy                       CSR by destination, int64 [num_dst + 1]
        rev_indices.npy                      source ids [E], int32 or int64
        rev_eid.npy                          forward-CSR position of each reversed edge [E]
        weight.npy (float32), timestamp.npy (int64)   in forward-CSR order

``indices``, ``rev_indices`` and ``rev_eid`` are int32 when both node counts and ``E``
fit in 31 bits, else int64 (:func:`graphrec.graph.csr.index_dtype`); ``indptr`` is
always int64.

Directory and file names are derived from names that come from data (relation names of
a knowledge graph, node types, features) by an injective, path-safe encoding
(:func:`path_component`): ``<T>`` = ``path_component(node_type)``, ``<F>`` =
``path_component(feature, dots=True)``, ``<K>`` = :func:`relation_key`. Two different
names never share a file, and no name can escape the store directory. The manifest
records each directory, so stores are read by name, never by re-deriving paths.

Internal node ids are contiguous ``0..N-1`` per type, the row order of the node table
(followed by ids added from edges under ``missing_endpoints: add``). A reverse relation
(``reverse:`` in the schema) is a view over its base relation's arrays, not a copy.

Opening a store checks, cheaply, that every array file exists, that its ``.npy`` header
parses and agrees with the manifest (dtype, shape) and that the file size is exactly
header + data: truncated or corrupt files are reported by path before any array is used.
``GraphStore(path, verify=True)`` (``graphrec info --verify``) also compares the sha256
of every file's contents with the manifest.

Writing is atomic: everything goes to a temporary sibling directory renamed into place
at the end, so a failed build never leaves a partial graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrec import __version__
from graphrec.errors import GraphrecError, StoreError
from graphrec.io import atomic_dir
from graphrec.graph.csr import expand_indptr

log = logging.getLogger(__name__)

FORMAT = "graphrec-graph-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

EdgeType = tuple[str, str, str]

#: longest directory/file stem written (bytes); longer names are shortened with a hash
MAX_COMPONENT_BYTES = 160
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")


class UnknownNameError(StoreError, KeyError):
    """A node type, relation, feature or edge attribute the store does not have.

    A :class:`~graphrec.errors.GraphrecError` (the CLI reports it as one line, exit 2)
    and a ``KeyError`` (for callers that test membership by catching it)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class EdgeTypeSyntaxError(GraphrecError, ValueError):
    """A relation written other than ``src:name:dst``."""


class IdTypeError(GraphrecError, TypeError):
    """Ids looked up with a type the node type's ids cannot be compared with."""


def _shorten(text: str) -> str:
    """``text`` itself when short enough, else a prefix plus a sha256 of the whole.
    ``%~`` never occurs in an encoded name (``%`` is always followed by two hex
    digits), so a shortened name cannot equal an unshortened one."""
    if len(text.encode()) <= MAX_COMPONENT_BYTES:
        return text
    return text[:100] + "%~" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _encode(name: str, dots: bool) -> str:
    out = []
    n = len(name)
    for i, ch in enumerate(name):
        if ch == "_":
            # an underscore at either end or next to another one is escaped, so an
            # encoded name never holds "__" nor starts or ends with "_": joining
            # encoded names with "__" (relation_key) stays injective
            lone = 0 < i < n - 1 and name[i - 1] != "_" and name[i + 1] != "_"
            out.append("_" if lone else "%5F")
        elif ch in _SAFE and not (dots and ch == "."):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
    text = "".join(out)
    if text in ("", ".", ".."):
        text = "".join(f"%{ord(c):02X}" for c in text) or "%"
    return text


def path_component(name: str, dots: bool = False) -> str:
    """A file-system-safe name for ``name``, injective (different names -> different
    results) and unchanged for the usual ``[A-Za-z0-9.-]`` names with single inner
    underscores (``user``, ``rev_rated``, ``ml-100k.item``).

    Every other character is percent-encoded as UTF-8 (``%2F`` for ``/``, ``%25`` for
    ``%``), as is an underscore at either end or beside another underscore; ``.`` and
    ``..`` become ``%2E``/``%2E%2E``; ``dots=True`` encodes every ``.`` (feature file
    stems, followed by suffixes like ``.offsets.npy``). Names over
    :data:`MAX_COMPONENT_BYTES` bytes are shortened with a sha256 of the full name.
    """
    return _shorten(_encode(name, dots))


def relation_key(edge_type: EdgeType) -> str:
    """Directory name of a relation: ``src__name__dst`` with each part encoded by
    :func:`path_component` (so ``("u", "r__v", "w")`` and ``("u__r", "v", "w")`` get
    different keys), shortened with a hash when over :data:`MAX_COMPONENT_BYTES`."""
    src, name, dst = edge_type
    return _shorten("__".join(_encode(part, dots=False) for part in (src, name, dst)))


def parse_edge_type(text: str) -> EdgeType:
    """``"user:rated:item"`` -> ``("user", "rated", "item")``.

    Node type names cannot hold ``:``, so the source type ends at the first ``:`` and
    the destination type starts after the last one."""
    src, sep1, rest = str(text).partition(":")
    name, sep2, dst = rest.rpartition(":")
    if not (sep1 and sep2 and src and name and dst):
        raise EdgeTypeSyntaxError(f"relation {text!r} must be written src:name:dst")
    return (src, name, dst)


def format_edge_type(edge_type: EdgeType) -> str:
    """``("user", "rated", "item")`` -> ``"user:rated:item"``."""
    return ":".join(edge_type)


# ---- writing --------------------------------------------------------------------------


def _sha256_array(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    flat = arr.reshape(-1) if arr.ndim else arr.reshape(1)
    step = max(1, (64 << 20) // max(1, arr.itemsize))
    for start in range(0, flat.shape[0], step):
        h.update(np.ascontiguousarray(flat[start : start + step]).data)
    return h.hexdigest()


class StoreWriter:
    """Writes a store's arrays one by one into a temporary directory (so large arrays can
    be freed as soon as they are on disk) and renames it into place on :meth:`finish`.

    >>> with StoreWriter(out) as w:
    ...     w.add_array("relations/k/indices.npy", indices)
    ...     w.finish(meta)
    """

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = Path(out)
        self.overwrite = overwrite
        self.files: dict[str, dict] = {}
        self.json_files: dict[str, dict] = {}
        self._cm = None
        self.tmp: Path | None = None

    def __enter__(self) -> StoreWriter:
        self._cm = atomic_dir(self.out, overwrite=self.overwrite)
        try:
            self.tmp = self._cm.__enter__()
        except OSError as err:  # e.g. a parent of OUT is a file, or not writable
            raise StoreError(f"{self.out}: cannot create the graph store: {err.strerror or err}") from None
        self._finished = False
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self._finished:
            exc_type, exc = StoreError, StoreError("StoreWriter closed without finish()")
        return self._cm.__exit__(exc_type, exc, tb)

    def _claim(self, rel: str) -> Path:
        """The path of ``rel`` in the temporary directory, refusing to write one file twice
        (two names mapped to one file would silently lose data; on a case-insensitive
        file system ``User`` and ``user`` do)."""
        path = self.tmp / rel
        if rel in self.files or rel in self.json_files or path.exists():
            raise StoreError(f"{self.out}: two parts of the graph map to the file {rel}; rename one of them")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_array(self, rel: str, arr: np.ndarray) -> None:
        path = self._claim(rel)
        np.save(path, arr, allow_pickle=False)
        self.files[rel] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "sha256": _sha256_array(arr)}

    def add_json(self, rel: str, obj) -> None:
        path = self._claim(rel)
        data = json.dumps(obj, ensure_ascii=False).encode()
        path.write_bytes(data)
        self.json_files[rel] = {"sha256": hashlib.sha256(data).hexdigest()}

    def finish(self, meta: dict) -> str:
        """Write the manifest; the directory is renamed into place when the block exits."""
        checksum = hashlib.sha256(
            "".join(f"{k}:{v['sha256']};" for k, v in sorted(self.files.items())).encode()
        ).hexdigest()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "builder_version": __version__,
            **meta,
            "files": dict(sorted(self.files.items())),
            "json_files": dict(sorted(self.json_files.items())),
            "checksum": checksum,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
        self._finished = True
        return checksum


def write_store(
    out: str | Path,
    arrays: Mapping[str, np.ndarray],
    meta: dict,
    json_files: Mapping[str, object] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a graph store atomically from ``arrays`` (relative path -> array; memory
    mapped inputs are copied and hashed without loading them whole) and ``json_files``;
    ``meta`` becomes the manifest, completed with format, builder version, per-file
    dtype/shape/sha256 and checksum."""
    with StoreWriter(out, overwrite=overwrite) as w:
        for rel in sorted(arrays):
            w.add_array(rel, arrays[rel])
        for rel, obj in sorted((json_files or {}).items()):
            w.add_json(rel, obj)
        w.finish(meta)
    return Path(out)


# ---- reading --------------------------------------------------------------------------

#: manifest keys that :class:`StoreWriter` writes itself (everything else is ``meta``)
WRITTEN_KEYS = ("files", "json_files", "checksum", "format", "format_version", "builder_version")


@dataclass(frozen=True)
class StoredFeature:
    """A node feature as stored: its ``kind`` and memory-mapped arrays.

    (The schema's description of a feature column is :class:`graphrec.graph.schema.Feature`.)

    categorical: ``codes`` int32 ``[N]``; numeric: ``values`` float32 ``[N]``;
    multi_categorical/text: ``offsets`` int64 ``[N+1]`` and ``codes`` int32 ``[nnz]``.
    ``vocab[c]`` is the token of code ``c`` (``vocab[0] == "<unk>"``).
    """

    name: str
    kind: str
    codes: np.ndarray | None = None
    values: np.ndarray | None = None
    offsets: np.ndarray | None = None
    vocab: list[str] | None = None

    def __repr__(self) -> str:
        n = len(self.values if self.values is not None else (self.offsets[:-1] if self.offsets is not None else self.codes))
        vocab = f", vocab={len(self.vocab)}" if self.vocab is not None else ""
        return f"StoredFeature({self.name!r}, kind={self.kind!r}, nodes={n}{vocab})"

    @property
    def num_categories(self) -> int:
        return len(self.vocab) if self.vocab is not None else 0


class RelationView:
    """One relation type ``(src, name, dst)`` of a store, as CSR in both directions.

    ``indptr``/``indices``: neighbours by source (``[num_src + 1]``, ``[E]``);
    ``rev_indptr``/``rev_indices``: by destination. Edge attributes are returned in
    forward-CSR order. A reverse relation is a view over the base relation's arrays.
    """

    def __init__(self, store: GraphStore, entry: dict):
        self.store = store
        self.edge_type: EdgeType = (entry["src"], entry["name"], entry["dst"])
        self.base_key: str = entry.get("base") or entry["key"]
        self.is_reverse: bool = entry.get("base") is not None
        self.num_edges: int = entry["num_edges"]
        self.attr_names: list[str] = list(entry.get("attrs", []))

    def __repr__(self) -> str:
        s, r, d = self.edge_type
        rev = ", reverse view" if self.is_reverse else ""
        return f"RelationView({s} -{r}-> {d}, edges={self.num_edges}{rev})"

    def _arr(self, name: str) -> np.ndarray:
        return self.store.array(f"relations/{self.base_key}/{name}.npy")

    @property
    def src_type(self) -> str:
        src, _, _ = self.edge_type
        return src

    @property
    def dst_type(self) -> str:
        _, _, dst = self.edge_type
        return dst

    @property
    def num_src(self) -> int:
        return self.store.num_nodes(self.src_type)

    @property
    def num_dst(self) -> int:
        return self.store.num_nodes(self.dst_type)

    @property
    def indptr(self) -> np.ndarray:
        return self._arr("rev_indptr" if self.is_reverse else "indptr")

    @property
    def indices(self) -> np.ndarray:
        return self._arr("rev_indices" if self.is_reverse else "indices")

    @property
    def rev_indptr(self) -> np.ndarray:
        return self._arr("indptr" if self.is_reverse else "rev_indptr")

    @property
    def rev_indices(self) -> np.ndarray:
        return self._arr("indices" if self.is_reverse else "rev_indices")

    def edge_attr(self, name: str) -> np.ndarray:
        """Edge attribute (``weight`` float32, ``timestamp`` int64) in forward-CSR order."""
        if name not in self.attr_names:
            raise UnknownNameError(f"relation {format_edge_type(self.edge_type)} has no edge attribute {name!r} "
                                   f"(has {self.attr_names})")
        base = self._arr(name)
        return base[self._arr("rev_eid")] if self.is_reverse else base

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        """``(src, dst)`` ``[E]`` in forward-CSR order: ``src`` int64, ``dst`` the stored
        ``indices`` (int32 or int64, memory-mapped)."""
        return expand_indptr(self.indptr), np.asarray(self.indices)

    def out_degree(self) -> np.ndarray:
        """Edges leaving each source node, int64 ``[num_src]``."""
        return np.diff(self.indptr)

    def in_degree(self) -> np.ndarray:
        """Edges entering each destination node, int64 ``[num_dst]``."""
        return np.diff(self.rev_indptr)


class GraphStore:
    """A built heterogeneous graph, loaded lazily (every array is ``np.load(mmap_mode)``).

    The default ``mmap_mode="c"`` (copy-on-write) gives writable arrays that torch can
    wrap without copying; writes stay private to the process and never reach the files.

    Opening checks the manifest and every array file's header and size (cheap: no data
    is read); ``verify=True`` also checks every file's sha256 (reads everything). Both
    raise :class:`~graphrec.errors.StoreError` naming the first bad file.

    >>> g = GraphStore("out/ml100k")
    >>> g.num_nodes("user"), g.relation(("user", "rated", "item")).num_edges
    (943, 100000)
    """

    def __init__(self, path: str | Path, verify: bool = False, mmap_mode: str = "c"):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise StoreError(f"{self.path}: not a graph store (no {MANIFEST}); build one with `graphrec build`")
        try:
            self.manifest = json.loads(mf.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StoreError(f"{mf}: corrupt manifest: {err}") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise StoreError(f"{mf}: not a graphrec graph store manifest")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{mf}: store format version {self.manifest.get('format_version')} is not supported "
                f"(this graphrec reads version {FORMAT_VERSION}); rebuild the graph"
            )
        self.mmap_mode = mmap_mode
        self._arrays: dict[str, np.ndarray] = {}
        self._id_arrays: dict[str, pa.Array] = {}
        self._check_manifest(mf)
        self._relations = {(r["src"], r["name"], r["dst"]): r for r in self.manifest["relations"]}
        self.check_files()
        if verify:
            self.verify()

    def __repr__(self) -> str:
        nodes = ", ".join(f"{t}={self.num_nodes(t)}" for t in self.node_types)
        return f"GraphStore({str(self.path)!r}, nodes: {nodes}, relations={len(self.edge_types)}, edges={self.num_edges()})"

    # ---- integrity --------------------------------------------------------------------
    def _check_manifest(self, mf: Path) -> None:
        """The manifest has what the reader relies on, consistently (a hand-edited or
        damaged manifest is a StoreError, not a KeyError deep inside a later call)."""
        m = self.manifest

        def bad(what: str):
            return StoreError(f"{mf}: corrupt manifest: {what}")

        for key, typ in (("files", dict), ("node_types", dict), ("relations", list), ("checksum", str)):
            if not isinstance(m.get(key), typ):
                raise bad(f"{key!r} missing or not a {typ.__name__}")
        for rel, info in m["files"].items():
            if not (isinstance(info, dict) and isinstance(info.get("dtype"), str) and isinstance(info.get("shape"), list)
                    and isinstance(info.get("sha256"), str)):
                raise bad(f"file entry {rel!r} lacks dtype/shape/sha256")
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise bad(f"file entry {rel!r} points outside the store")
        for name, entry in m["node_types"].items():
            if not (isinstance(entry, dict) and isinstance(entry.get("count"), int) and entry.get("id_dtype") in ("int64", "string")):
                raise bad(f"node type {name!r} lacks count/id_dtype")
        for i, r in enumerate(m["relations"]):
            if not (isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("key", "src", "name", "dst"))
                    and isinstance(r.get("num_edges"), int)):
                raise bad(f"relations[{i}] lacks key/src/name/dst/num_edges")
            for side in ("src", "dst"):
                if r[side] not in m["node_types"]:
                    raise bad(f"relations[{i}] {side} type {r[side]!r} is not a node type")
        expected = hashlib.sha256(
            "".join(f"{k}:{v['sha256']};" for k, v in sorted(m["files"].items())).encode()
        ).hexdigest()
        if expected != m["checksum"]:
            raise bad("the checksum does not match the file entries (manifest edited?)")

    def check_files(self) -> None:
        """Cheap integrity check of every array file (no data read): it exists, its
        ``.npy`` header parses, dtype and shape agree with the manifest, and the file
        size is exactly header + ``prod(shape) * itemsize`` (a truncated or extended
        file fails here). Raises a StoreError naming the file."""
        for rel, info in self.manifest["files"].items():
            p = self.path / rel
            try:
                size = p.stat().st_size
                with open(p, "rb") as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy version {version}")
                    offset = fh.tell()
            except FileNotFoundError:
                raise StoreError(f"{p}: missing (store incomplete or moved)") from None
            except (ValueError, OSError, SyntaxError, TypeError) as err:
                raise StoreError(f"{p}: corrupt array file (bad .npy header: {err})") from None
            if dtype.hasobject:
                raise StoreError(f"{p}: corrupt array file (object dtype)")
            if str(dtype) != info["dtype"] or list(shape) != list(info["shape"]):
                raise StoreError(f"{p}: array is {dtype}{list(shape)}, the manifest says {info['dtype']}{info['shape']}")
            want = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if size != want:
                how = "truncated" if size < want else "has trailing bytes"
                raise StoreError(f"{p}: corrupt array file ({how}: {size} bytes, expected {want})")
        for rel in self.manifest.get("json_files", {}):
            if not (self.path / rel).is_file():
                raise StoreError(f"{self.path / rel}: missing (store incomplete or moved)")

    def verify(self) -> None:
        """Full integrity check: every array's and JSON file's sha256 against the
        manifest (reads every byte). Raises a StoreError naming the first bad file."""
        self.check_files()
        for rel, info in self.manifest["files"].items():
            if _sha256_array(self.array(rel)) != info["sha256"]:
                raise StoreError(f"{self.path / rel}: fails its sha256 checksum (file changed or corrupt)")
        for rel, info in self.manifest.get("json_files", {}).items():
            if hashlib.sha256((self.path / rel).read_bytes()).hexdigest() != info["sha256"]:
                raise StoreError(f"{self.path / rel}: fails its sha256 checksum (file changed or corrupt)")

    # ---- metadata ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.name)

    @property
    def checksum(self) -> str:
        return self.manifest["checksum"]

    @property
    def node_types(self) -> list[str]:
        return list(self.manifest["node_types"])

    @property
    def edge_types(self) -> list[EdgeType]:
        return list(self._relations)

    def meta(self) -> dict:
        """The manifest without what :class:`StoreWriter` computes (files, checksums,
        format): the ``meta`` to write a modified copy of this store with."""
        return {k: v for k, v in self.manifest.items() if k not in WRITTEN_KEYS}

    def num_nodes(self, node_type: str) -> int:
        return int(self._node_entry(node_type)["count"])

    def num_edges(self, edge_type: EdgeType | None = None) -> int:
        if edge_type is None:
            return sum(r["num_edges"] for r in self._relations.values())
        return int(self._rel_entry(edge_type)["num_edges"])

    def has_relation(self, edge_type: EdgeType | str) -> bool:
        if isinstance(edge_type, str):
            edge_type = parse_edge_type(edge_type)
        return tuple(edge_type) in self._relations

    def _node_entry(self, node_type: str) -> dict:
        try:
            return self.manifest["node_types"][node_type]
        except (KeyError, TypeError):
            raise UnknownNameError(f"{self.path}: unknown node type {node_type!r} (store has {self.node_types})") from None

    def _node_dir(self, node_type: str) -> str:
        return self._node_entry(node_type).get("dir") or f"nodes/{node_type}"  # stores before "dir": plain names

    def _rel_entry(self, edge_type) -> dict:
        if isinstance(edge_type, str):
            edge_type = parse_edge_type(edge_type)
        try:
            return self._relations[tuple(edge_type)]
        except (KeyError, TypeError):
            known = [format_edge_type(e) for e in self.edge_types]
            shown = format_edge_type(edge_type) if len(tuple(edge_type)) == 3 else str(edge_type)
            raise UnknownNameError(f"{self.path}: unknown relation {shown!r} (store has {known})") from None

    # ---- arrays -----------------------------------------------------------------------
    def array(self, relpath: str) -> np.ndarray:
        """A stored array by relative path, memory-mapped on first access."""
        arr = self._arrays.get(relpath)
        if arr is None:
            if relpath not in self.manifest["files"]:
                raise StoreError(f"{self.path}: {relpath} is not listed in the manifest")
            p = self.path / relpath
            try:
                arr = np.load(p, mmap_mode=self.mmap_mode, allow_pickle=False)
            except FileNotFoundError:
                raise StoreError(f"{p}: missing (store incomplete or moved)") from None
            except (ValueError, OSError) as err:
                raise StoreError(f"{p}: corrupt array file ({err})") from None
            self._arrays[relpath] = arr
        return arr

    def arrays(self) -> dict[str, np.ndarray]:
        """All arrays by relative path (memory-mapped)."""
        return {rel: self.array(rel) for rel in self.manifest["files"]}

    def _read_json(self, rel: str):
        p = self.path / rel
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"{p}: missing (store incomplete or moved)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StoreError(f"{p}: corrupt JSON file: {err}") from None

    def json_files(self) -> dict[str, object]:
        """The store's JSON files (vocabularies) by relative path, the manifest excluded."""
        rels = list(self.manifest["json_files"]) if "json_files" in self.manifest else [
            p.relative_to(self.path).as_posix() for p in self.path.rglob("*.json")]
        return {rel: self._read_json(rel) for rel in rels if rel != MANIFEST}

    # ---- nodes ------------------------------------------------------------------------
    def node_ids(self, node_type: str) -> pa.Array:
        """Original ids of ``node_type`` in internal-id order: an Arrow ``int64`` or
        ``large_string`` array built zero-copy over the memory-mapped files."""
        if node_type in self._id_arrays:
            return self._id_arrays[node_type]
        entry = self._node_entry(node_type)
        base = f"{self._node_dir(node_type)}/ids"
        if entry["id_dtype"] == "int64":
            arr = pa.array(np.asarray(self.array(f"{base}.npy")))
        else:
            offsets = np.asarray(self.array(f"{base}.offsets.npy"))
            data = np.asarray(self.array(f"{base}.bytes.npy"))
            arr = pa.LargeStringArray.from_buffers(
                len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data)
            )
        self._id_arrays[node_type] = arr
        return arr

    def original_ids(self, node_type: str, index=None) -> np.ndarray:
        """Original ids for internal ids ``index`` (all when None) as a numpy array
        (int64, or object strings)."""
        ids = self.node_ids(node_type)
        if index is not None:
            ids = ids.take(pa.array(np.asarray(index, dtype=np.int64)))
        return ids.to_numpy(zero_copy_only=False)

    def lookup(self, node_type: str, original_ids) -> np.ndarray:
        """Internal ids (int64) of ``original_ids``; ``-1`` where an id is unknown."""
        ids = self.node_ids(node_type)
        query = pa.array(original_ids) if not isinstance(original_ids, (pa.Array, pa.ChunkedArray)) else original_ids
        try:
            query = query.cast(ids.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise IdTypeError(f"{node_type} ids are {ids.type}; cannot look up values of type {query.type}") from None
        idx = pc.index_in(query, value_set=ids).fill_null(-1)
        return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)

    def feature_names(self, node_type: str) -> list[str]:
        return list(self._node_entry(node_type).get("features", {}))

    def feature(self, node_type: str, name: str) -> StoredFeature:
        """The stored arrays and vocabulary of feature ``name`` of ``node_type``."""
        entry = self._node_entry(node_type).get("features", {})
        if name not in entry:
            raise UnknownNameError(f"{self.path}: node type {node_type!r} has no feature {name!r} (has {list(entry)})")
        info = entry[name]
        base = info.get("path") or f"{self._node_dir(node_type)}/features/{name}"  # stores before "path": plain names
        kind = info["kind"]
        vocab = None
        if kind != "numeric":
            vocab = self._read_json(f"{base}.vocab.json")
        if kind == "numeric":
            return StoredFeature(name, kind, values=self.array(f"{base}.npy"))
        if kind == "categorical":
            return StoredFeature(name, kind, codes=self.array(f"{base}.npy"), vocab=vocab)
        return StoredFeature(
            name, kind, codes=self.array(f"{base}.values.npy"), offsets=self.array(f"{base}.offsets.npy"), vocab=vocab
        )

    # ---- relations --------------------------------------------------------------------
    def relation(self, edge_type: EdgeType | str) -> RelationView:
        return RelationView(self, self._rel_entry(edge_type))

    def relations(self) -> list[RelationView]:
        return [self.relation(et) for et in self.edge_types]

    def relation_entry(self, edge_type) -> dict:
        return dict(self._rel_entry(edge_type))

    # ---- persistence and conversions -----------------------------------------------
    def save(self, out: str | Path, overwrite: bool = False) -> GraphStore:
        """Copy this store to ``out`` (atomically; checksums recomputed) and open it."""
        write_store(out, self.arrays(), self.meta(), self.json_files(), overwrite=overwrite)
        return GraphStore(out)

    def equals(self, other: GraphStore) -> bool:
        """Same node types, relations and identical array contents."""
        if self.manifest["node_types"] != other.manifest["node_types"]:
            return False
        if self.manifest["relations"] != other.manifest["relations"]:
            return False
        if set(self.manifest["files"]) != set(other.manifest["files"]):
            return False
        return all(self.manifest["files"][k]["sha256"] == other.manifest["files"][k]["sha256"] for k in self.manifest["files"])

    def to_pyg(self, **kwargs):
        from graphrec.graph.convert import to_pyg

        return to_pyg(self, **kwargs)

    def to_networkx(self, **kwargs):
        from graphrec.graph.convert import to_networkx

        return to_networkx(self, **kwargs)

    def to_dgl(self, **kwargs):
        from graphrec.graph.convert import to_dgl

        return to_dgl(self, **kwargs)
