"""Storage for partitioned runs: arrays and small JSON documents under a run root on
local disk or any ``pyarrow.fs`` filesystem, and versioned, checksummed commits of
partition checkpoints (as PyTorch-BigGraph's ``checkpoint_version``).

Two layers:

* :class:`RunStorage` ``(uri_or_path)``: a run root resolved with
  :meth:`pyarrow.fs.FileSystem.from_uri` (``/abs/path``, ``relative/path``,
  ``file:///abs/path``, ``s3://bucket/prefix``, ``gs://bucket/prefix``,
  ``hdfs://namenode:port/path``; S3 options such as ``?endpoint_override=host:port&scheme=http&region=r``
  go in the URI's query, or pass a configured ``filesystem=``). Every path is relative to
  the root. Arrays are ``.npy`` bytes written through ``open_output_stream`` and read
  through ``open_input_file`` (zero-copy from the fetched buffer; a local file is
  memory-mapped). Writes of documents are atomic: locally write-temp-fsync-rename
  (:mod:`graphrec.io`); on object stores (S3, GCS) one upload, which becomes visible
  only when complete; elsewhere (HDFS) write a temporary and rename it.
* :class:`PartitionCheckpoints` ``(storage, prefix="checkpoint", keep=2)``: named
  arrays (``"user/3/embeddings"``, ``"user/3/adagrad"``, ``"relations"``) committed in
  versions, so a reader never sees a mixed or half-written state.

Layout under ``<root>/<prefix>/``::

    checkpoint_version.json            the commit point: the committed manifest (below)
    versions/v0000000007.json          a copy of each manifest (history; the last keep kept)
    files/<name>.v<V>.<token>.npy      array files, immutable once written; V = the
                                       name's own version, token = 8 random hex digits

A manifest (``checkpoint_version.json``)::

    {"format": "graphrec-checkpoint/1", "version": N,
     "files": {name: {"version": V, "path": "files/<name>.v<V>.<token>.npy",
                      "sha256": ..., "bytes": ..., "dtype": "<f4", "shape": [rows, dim]}},
     "meta": {...}}                    # e.g. the resume position (epoch, buckets done)

Commit protocol
---------------
1. **Write** (any worker): :meth:`PartitionCheckpoints.write` stores a new array file
   for ``name`` at version ``V + 1`` (``V`` = its committed version in the manifest the
   writer started from, 0 if none) under a fresh file name, hashing it while it streams,
   and returns a :class:`FileEntry` (path, sha256, size, dtype, shape). Nothing a reader
   looks at changes: committed files are never overwritten.
2. **Commit** (one writer): :meth:`PartitionCheckpoints.commit` reads the committed
   manifest ``N``, checks every entry (its file exists with its size; its version is
   exactly the committed one + 1, else :class:`StaleWrite`), writes the new manifest
   ``N + 1`` to ``versions/`` and then to ``checkpoint_version.json`` in one atomic
   write. That last write is the commit point: before it readers see ``N``, after it
   ``N + 1``; a crash anywhere before it leaves ``N`` intact.
3. **Garbage collection** (same writer, after each commit): manifests older than the
   last ``keep`` are dropped together with the files they reference and no kept manifest
   does; versions listed in the head's ``meta["pinned"]`` are kept too (an early-stopped
   run's best epoch, which :meth:`PartitionCheckpoints.rollback` makes the head again). Only files that some commit once referenced are deleted, so files that other
   workers are still writing for a later commit are never touched. Files of writes that
   never got committed (a crashed worker) are removed by :meth:`discard_uncommitted`,
   which the driver calls when no worker is writing (e.g. on resume).

**Concurrency assumption**: exactly one process commits (the driver / bucket
scheduler); many workers may :meth:`~PartitionCheckpoints.write` concurrently, each to
names it holds exclusively (a trainer holds its bucket's two partitions). Object stores
offer no compare-and-swap that pyarrow exposes, so two committers could lose each
other's updates; the version checks turn the common mistakes (a worker whose bucket was
re-run elsewhere reporting late, a commit built on an old manifest) into
:class:`StaleWrite` instead. A late report that arrives *before* the re-run's is
indistinguishable by version, so the driver commits a worker's entries only while that
worker still holds the bucket's lease. An array upload that fails half-way may still
leave an object behind on an object store; it is never referenced by a manifest (and
would fail its checksum), and :meth:`~PartitionCheckpoints.discard_uncommitted` removes it.

A whole-checkpoint commit (PyTorch-BigGraph's end of epoch) is one commit of every name
(:meth:`PartitionCheckpoints.transaction`); a per-bucket commit is one commit of the
bucket's partitions (embeddings and optimizer state together), so the committed state
always holds either all of a bucket's updates or none. Readers (:meth:`~PartitionCheckpoints.head`
then :meth:`~PartitionCheckpoints.read`) use only the files a manifest names and verify
each file's SHA-256; a missing or corrupt file is a :class:`StorageError` naming it. A
reader that holds manifest ``N`` can keep reading its files through ``keep - 1`` further
commits (so training with concurrent readers wants ``keep >= 2``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from graphrec.errors import GraphrecError
from graphrec.io import atomic_file, fsync_path, sha256_file, write_bytes

log = logging.getLogger(__name__)

FORMAT = "graphrec-checkpoint/1"
VERSION_FILE = "checkpoint_version.json"
#: ``meta[PINNED_KEY]``: committed versions garbage collection keeps beyond the last
#: ``keep`` (e.g. the best epoch of an early-stopped run)
PINNED_KEY = "pinned"
VERSIONS_DIR = "versions"
FILES_DIR = "files"

_OBJECT_STORES = {"s3", "gcs"}  # a single upload is atomic; rename is a copy (not atomic)
_NAME = re.compile(r"[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*", re.ASCII)
_DATA_FILE = re.compile(r"files/(?P<name>.+)\.v(?P<version>\d+)\.(?P<token>[0-9a-f]{8})\.npy")
_TMP_FILE = re.compile(r"files/(.+/)?\.[^/]+\.npy\.tmp-[0-9a-f]{8}")  # a local write killed before its rename
_HISTORY_FILE = re.compile(r"versions/v(?P<version>\d{10})\.json")


class StorageError(GraphrecError):
    """A file under a run root is missing, unreadable, corrupt, or not what was expected."""


class StaleWrite(StorageError):
    """A commit that does not follow from the committed state (a late report of a write
    made from an older version, or a second committer)."""


# ---------------------------------------------------------------- run storage


def _is_uri(s: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", s) is not None


class _HashingReader:
    """A binary input stream that hashes what is read through it."""

    def __init__(self, f):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read() if n is None or n < 0 else self.f.read(n)
        self.sha.update(data)
        self.bytes += len(data)
        return data

    def readinto(self, view: memoryview) -> int:
        n = self.f.readinto(view)
        self.sha.update(view[:n])
        self.bytes += n
        return n


class _HashingWriter:
    """A write-only file object that hashes (SHA-256) and counts what passes through."""

    def __init__(self, f):
        self._f = f
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self._f.write(view)
        self.bytes += view.nbytes
        return view.nbytes


def _array_from_buffer(buf: pa.Buffer, where: str) -> np.ndarray:
    """The array in ``.npy`` bytes ``buf``, without copying the data (read-only)."""
    fmt = np.lib.format
    reader = pa.BufferReader(buf)
    try:
        version = fmt.read_magic(reader)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(reader)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(reader)
        else:  # 3.0 (utf-8 field names): rare; let numpy parse it (one copy)
            return np.load(io.BytesIO(memoryview(buf)), allow_pickle=False)
    except ValueError as err:
        raise StorageError(f"{where}: not a .npy array ({err})") from None
    if dtype.hasobject:
        raise StorageError(f"{where}: holds Python objects (dtype {dtype}); refusing to unpickle it")
    offset, count = reader.tell(), math.prod(shape)
    if buf.size != offset + count * dtype.itemsize:
        raise StorageError(f"{where}: {buf.size} bytes where the header {tuple(shape)} {dtype} needs "
                           f"{offset + count * dtype.itemsize} (truncated or padded)")
    if count == 0:
        flat = np.empty(0, dtype=dtype)
    else:
        flat = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    flat.flags.writeable = False  # as a memory-mapped local file: copy to modify
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


class RunStorage:
    """A run root on local disk or any ``pyarrow.fs`` filesystem; every path is relative
    to it (``"checkpoint/files/x.npy"``; no ``..``, no leading ``/``).

    ``uri_or_path``: a local path (relative paths are made absolute) or a URI that
    :meth:`pyarrow.fs.FileSystem.from_uri` accepts. With ``filesystem`` given,
    ``uri_or_path`` is the root's path inside it (e.g. ``"bucket/prefix"`` for a
    configured :class:`pyarrow.fs.S3FileSystem`). Picklable (pyarrow filesystems are),
    so one can be handed to Ray workers.
    """

    def __init__(self, uri_or_path: str | os.PathLike, filesystem: pafs.FileSystem | None = None):
        spec = os.fspath(uri_or_path)
        if filesystem is not None:
            fs, root = filesystem, spec
        elif _is_uri(spec):
            try:
                fs, root = pafs.FileSystem.from_uri(spec)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as err:
                raise StorageError(redact(f"{spec}: not a filesystem URI pyarrow can open ({err})")) from None
        else:
            fs, root = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(spec))
        self.fs: pafs.FileSystem = fs
        self.root: str = root.rstrip("/") or "/"
        self.is_local: bool = isinstance(fs, pafs.LocalFileSystem)
        self._kind: str = fs.type_name
        self.uri: str = self.root if self.is_local else f"{self._kind}://{self.root}"
        #: the path or URI as given, options (e.g. ``endpoint_override``) included: what
        #: reopens this storage
        self.location: str = spec

    def __repr__(self) -> str:
        return f"RunStorage({self.uri!r})"

    # ---- paths

    def path(self, rel: str) -> str:
        """``rel``'s path inside the filesystem; :class:`StorageError` for a path that
        is absolute, empty or climbs out of the root."""
        parts = rel.split("/") if isinstance(rel, str) else [""]
        if "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise StorageError(f"{rel!r}: not a path inside the run root {self.uri}")
        return f"{self.root}/{'/'.join(parts)}" if self.root != "/" else "/" + "/".join(parts)

    def url(self, rel: str) -> str:
        """Where ``rel`` is, for messages (a local path or ``s3://bucket/...``)."""
        return self.path(rel) if self.is_local else f"{self._kind}://{self.path(rel)}"

    def _mkparent(self, path: str) -> None:
        if self._kind not in _OBJECT_STORES:  # object stores have no directories to make
            parent = path.rsplit("/", 1)[0]
            if parent:
                self.fs.create_dir(parent, recursive=True)

    # ---- bytes and JSON documents

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` atomically (replacing it): a reader sees the old
        content or the new, never a part."""
        path = self.path(rel)
        try:
            if self.is_local:
                write_bytes(path, data)
            elif self._kind in _OBJECT_STORES:
                with self.fs.open_output_stream(path) as out:  # visible only once complete
                    out.write(data)
            else:
                self._mkparent(path)
                tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.move(tmp, path)
        except OSError as err:
            raise StorageError(f"{self.url(rel)}: cannot write ({err})") from None

    def get_bytes(self, rel: str) -> bytes:
        """The content of ``rel``; :class:`StorageError` naming it when missing."""
        try:
            with self.fs.open_input_file(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            raise StorageError(f"{self.url(rel)}: missing") from None
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{self.url(rel)}: cannot read ({err})") from None

    def put_json(self, rel: str, obj) -> None:
        """Write ``obj`` as JSON to ``rel`` atomically (a small document; compact, so
        that the C encoder writes it: manifests are written after every bucket)."""
        self.put_bytes(rel, (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode())

    def sync_dirs(self, rels) -> None:
        """Locally, fsync the directories holding ``rels`` (once each): makes files
        written with ``put_array(..., fresh=True)`` durable under their names."""
        if not self.is_local:
            return
        for d in sorted({os.path.dirname(self.path(r)) for r in rels}):
            fsync_path(Path(d))

    def get_json(self, rel: str):
        """The JSON document ``rel``; :class:`StorageError` when missing or not JSON."""
        data = self.get_bytes(rel)
        try:
            return json.loads(data)
        except ValueError as err:
            raise StorageError(f"{self.url(rel)}: not valid JSON ({err})") from None

    # ---- arrays

    def put_array(self, rel: str, arr, fresh: bool = False) -> dict:
        """Write ``arr`` as ``.npy`` to ``rel``, streaming (bounded extra memory) and
        hashing as it goes; returns ``{"sha256", "bytes", "dtype", "shape"}``.

        Locally the file is written beside ``rel``, fsync'd and renamed into place; with
        ``fresh`` (``rel`` is a new name nobody reads until a commit names it) it is
        written in place and fsync'd, and the committer fsyncs its directory
        (:meth:`sync_dirs`). On an object store it is one upload (visible only when
        complete). Object arrays are refused (``.npy`` would pickle them)."""
        arr = np.asarray(arr)
        if arr.dtype.hasobject:
            raise StorageError(f"{self.url(rel)}: cannot store an array of Python objects (dtype {arr.dtype})")
        path = self.path(rel)
        try:
            if self.is_local and fresh:
                self._mkparent(path)
                with open(path, "wb") as f:
                    w = _HashingWriter(f)
                    np.lib.format.write_array(w, arr, allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
            elif self.is_local:
                with atomic_file(path, overwrite=True) as tmp, open(tmp, "wb") as f:
                    w = _HashingWriter(f)
                    np.lib.format.write_array(w, arr, allow_pickle=False)
            else:
                self._mkparent(path)
                with self.fs.open_output_stream(path) as out:
                    w = _HashingWriter(out)
                    np.lib.format.write_array(w, arr, allow_pickle=False)
        except OSError as err:
            raise StorageError(f"{self.url(rel)}: cannot write ({err})") from None
        return {"sha256": w.sha.hexdigest(), "bytes": w.bytes, "dtype": arr.dtype.str, "shape": list(arr.shape)}

    def get_array(self, rel: str, sha256: str | None = None, mmap: bool = True) -> np.ndarray:
        """The array in ``rel`` (read-only). With ``sha256`` the file is checked first:
        a mismatch is a :class:`StorageError` naming the file. A local file is
        memory-mapped when ``mmap``; a remote one is fetched once and viewed without
        copying."""
        path, where = self.path(rel), self.url(rel)
        if self.is_local:
            if not os.path.isfile(path):
                raise StorageError(f"{where}: missing")
            if sha256 is not None and (actual := sha256_file(path)) != sha256:
                raise StorageError(f"{where}: sha256 {actual[:12]} does not match the recorded {sha256[:12]} "
                                   "(corrupt or replaced)")
            try:
                arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise StorageError(f"{where}: not a readable .npy array ({err})") from None
            if not mmap:
                arr.flags.writeable = False
            return arr
        try:
            with self.fs.open_input_file(path) as f:
                buf = f.read_buffer()
        except FileNotFoundError:
            raise StorageError(f"{where}: missing") from None
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{where}: cannot read ({err})") from None
        if sha256 is not None and (actual := hashlib.sha256(buf).hexdigest()) != sha256:
            raise StorageError(f"{where}: sha256 {actual[:12]} does not match the recorded {sha256[:12]} "
                               "(corrupt or replaced)")
        return _array_from_buffer(buf, where)

    def read_array_into(self, rel: str, out: np.ndarray, sha256: str | None = None) -> None:
        """Read the ``.npy`` array ``rel`` straight into ``out`` (C-contiguous, the same
        dtype and shape): no mapping and no intermediate copy, so a process's memory
        holds the array once. With ``sha256`` the bytes are hashed as they stream and a
        mismatch is a :class:`StorageError` naming the file (``out`` is then garbage)."""
        path, where = self.path(rel), self.url(rel)
        if not out.flags.c_contiguous:
            raise ValueError("read_array_into needs a C-contiguous output array")
        try:
            with self.fs.open_input_stream(path) as raw:
                f = _HashingReader(raw)
                try:
                    major, _ = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(f)
                except ValueError as err:
                    raise StorageError(f"{where}: not a readable .npy array ({err})") from None
                if fortran or dtype != out.dtype or tuple(shape) != out.shape:
                    raise StorageError(f"{where}: holds {tuple(shape)} {dtype.str}"
                                       f"{' (Fortran order)' if fortran else ''}, expected {out.shape} {out.dtype.str}")
                view = memoryview(out.reshape(-1).view(np.uint8))
                pos, chunk = 0, 1 << 26
                while pos < view.nbytes:
                    n = f.readinto(view[pos : pos + chunk])
                    if not n:
                        raise StorageError(f"{where}: truncated ({pos} of {view.nbytes} data bytes)")
                    pos += n
                if sha256 is not None:
                    f.read()  # trailing bytes (none in a .npy) count in the file's hash
        except FileNotFoundError:
            raise StorageError(f"{where}: missing") from None
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{where}: cannot read ({err})") from None
        if sha256 is not None and (actual := f.sha.hexdigest()) != sha256:
            raise StorageError(f"{where}: sha256 {actual[:12]} does not match the recorded {sha256[:12]} "
                               "(corrupt or replaced)")

    # ---- listing and deleting

    def size(self, rel: str) -> int | None:
        """``rel``'s size in bytes, ``None`` when it is not a file."""
        info = self.fs.get_file_info(self.path(rel))
        return info.size if info.type == pafs.FileType.File else None

    def exists(self, rel: str) -> bool:
        return self.size(rel) is not None

    def list(self, rel: str = "") -> list[str]:
        """Every file under ``rel`` (the whole root when empty), recursively, as sorted
        paths relative to the root; ``[]`` when there is nothing."""
        base = self.path(rel) if rel else self.root
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except (NotADirectoryError, FileNotFoundError):
            return []
        except OSError as err:
            raise StorageError(f"{self.url(rel) if rel else self.uri}: cannot list ({err})") from None
        prefix = self.root.rstrip("/") + "/"
        return sorted(i.path[len(prefix):] for i in infos if i.type == pafs.FileType.File and i.path.startswith(prefix))

    def delete(self, rel: str, missing_ok: bool = True) -> None:
        """Delete the file ``rel`` (a missing one is fine with ``missing_ok``)."""
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            if not missing_ok:
                raise StorageError(f"{self.url(rel)}: missing") from None
        except OSError as err:
            raise StorageError(f"{self.url(rel)}: cannot delete ({err})") from None


def redact(uri: str) -> str:
    """``uri`` (or a message quoting it) without credentials: ``s3://KEY:SECRET@bucket``
    -> ``s3://***@bucket``, ``?secret_key=...`` -> ``?secret_key=***``."""
    uri = re.sub(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*@", r"\1***@", uri)
    return re.sub(r"((?:access_key|secret_key|session_token)=)[^&\s]*", r"\1***", uri)


# ---------------------------------------------------------------- versioned partition checkpoints


@dataclass(frozen=True)
class FileEntry:
    """One array file of a checkpoint: ``name`` at its own ``version``, stored at
    ``path`` (relative to the checkpoint prefix) with its ``sha256``, size in ``bytes``,
    ``dtype`` (numpy ``str``, e.g. ``"<f4"``) and ``shape``."""

    name: str
    version: int
    path: str
    sha256: str
    bytes: int
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("name")
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, name: str, d: Mapping) -> FileEntry:
        return cls(name=name, version=int(d["version"]), path=str(d["path"]), sha256=str(d["sha256"]),
                   bytes=int(d["bytes"]), dtype=str(d["dtype"]), shape=tuple(int(x) for x in d["shape"]))


@dataclass(frozen=True)
class Manifest:
    """A committed checkpoint: its commit ``version`` (0 = nothing committed yet), the
    file of each name, and ``meta`` (a JSON object committed with them)."""

    version: int = 0
    files: dict[str, FileEntry] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": self.version,
                "files": {n: e.to_dict() for n, e in sorted(self.files.items())}, "meta": self.meta}

    @classmethod
    def from_dict(cls, d, where: str) -> Manifest:
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {FORMAT!r}")
            files = {n: FileEntry.from_dict(n, e) for n, e in d["files"].items()}
            return cls(version=int(d["version"]), files=files, meta=dict(d.get("meta") or {}))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise StorageError(f"{where}: not a graphrec checkpoint manifest ({err})") from None


class PartitionCheckpoints:
    """Versioned, checksummed arrays under ``storage``/``prefix`` (see the module
    docstring for the layout and the commit protocol); ``keep`` (>= 1) committed
    versions stay readable.

    Writers (any process): :meth:`write` returns a :class:`FileEntry` to report to the
    committer. Committer (one process): :meth:`commit`, :meth:`transaction`,
    :meth:`gc`, :meth:`discard_uncommitted`. Readers: :meth:`head`, :meth:`read`,
    :meth:`manifest`.
    """

    def __init__(self, storage: RunStorage, prefix: str = "checkpoint", keep: int = 2):
        if keep < 1:
            raise StorageError(f"keep must be at least 1 (got {keep})")
        self.storage = storage
        self.prefix = prefix.strip("/")
        self.keep = int(keep)
        self._paths_cache: dict[str, frozenset[str]] = {}  # manifest path -> the file paths it names
        storage.path(self._rel(VERSION_FILE))  # validates the prefix

    def __repr__(self) -> str:
        return f"PartitionCheckpoints({self.storage.uri!r}, prefix={self.prefix!r}, keep={self.keep})"

    def _rel(self, p: str) -> str:
        return f"{self.prefix}/{p}" if self.prefix else p

    # ---- reading

    def head(self) -> Manifest:
        """The committed manifest (``version`` 0 and no files when nothing is committed)."""
        rel = self._rel(VERSION_FILE)
        if not self.storage.exists(rel):
            return Manifest()
        return Manifest.from_dict(self.storage.get_json(rel), self.storage.url(rel))

    def versions(self) -> list[int]:
        """The committed versions still readable with :meth:`manifest` (oldest first)."""
        head = self.head().version
        return sorted(v for v in self._history() if v <= head) or ([head] if head else [])

    def manifest(self, version: int | None = None) -> Manifest:
        """The manifest of committed ``version`` (the head when ``None``)."""
        head = self.head()
        if version is None or version == head.version:
            return head
        if not 0 < version < head.version:
            raise StorageError(f"{self.storage.uri}/{self.prefix}: version {version} is not committed "
                               f"(the committed version is {head.version})")
        rel = self._rel(f"{VERSIONS_DIR}/v{version:010d}.json")
        if not self.storage.exists(rel):
            raise StorageError(f"{self.storage.url(rel)}: version {version} was garbage-collected "
                               f"(the last {self.keep} are kept)")
        return Manifest.from_dict(self.storage.get_json(rel), self.storage.url(rel))

    def check_files(self, manifest: Manifest | None = None) -> None:
        """Every file of ``manifest`` (default the head) is in storage, at least its recorded
        size: one metadata call per file, nothing read. A :class:`StorageError` names the
        first that is missing or short (checked before work that would fail half-way)."""
        m = manifest if manifest is not None else self.head()
        for entry in m.files.values():
            rel = self._rel(entry.path)
            size = self.storage.size(rel)
            if size is None or size < entry.bytes:
                raise StorageError(f"{self.storage.url(rel)}: {'missing' if size is None else 'truncated'} "
                                   f"({entry.name} of checkpoint version {m.version})")

    def read(self, name: str, manifest: Manifest | None = None, *, mmap: bool = True,
             verify: bool = True) -> np.ndarray:
        """The committed array ``name`` (of ``manifest``, default the head), checked
        against its recorded SHA-256, dtype and shape (``verify``); read-only."""
        m = manifest if manifest is not None else self.head()
        entry = m.files.get(name)
        if entry is None:
            raise StorageError(f"{self.storage.uri}/{self.prefix}: no {name!r} in checkpoint version {m.version} "
                               f"(it has {sorted(m.files) or 'nothing'})")
        rel = self._rel(entry.path)
        arr = self.storage.get_array(rel, sha256=entry.sha256 if verify else None, mmap=mmap)
        if arr.dtype.str != entry.dtype or tuple(arr.shape) != entry.shape:
            raise StorageError(f"{self.storage.url(rel)}: holds {tuple(arr.shape)} {arr.dtype.str}, the manifest "
                               f"says {entry.shape} {entry.dtype}")
        return arr

    def read_into(self, name: str, out: np.ndarray, manifest: Manifest | None = None, *,
                  verify: bool = True) -> None:
        """Read committed ``name`` (of ``manifest``, default the head) into ``out``
        (:meth:`RunStorage.read_array_into`), checked against its SHA-256 (``verify``)."""
        m = manifest if manifest is not None else self.head()
        entry = m.files.get(name)
        if entry is None:
            raise StorageError(f"{self.storage.uri}/{self.prefix}: no {name!r} in checkpoint version {m.version}")
        self.storage.read_array_into(self._rel(entry.path), out, sha256=entry.sha256 if verify else None)

    # ---- writing (any worker)

    def write(self, name: str, arr, base: Manifest | None = None) -> FileEntry:
        """Store ``arr`` as the next version of ``name`` (its version in ``base``, by
        default the head, plus one) under a fresh file name; nothing is committed.
        Returns the :class:`FileEntry` to pass to :meth:`commit`."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise StorageError(f"{name!r}: checkpoint names are letters, digits, _ and -, separated by /")
        base = base if base is not None else self.head()
        prev = base.files.get(name)
        version = (prev.version if prev is not None else 0) + 1
        path = f"{FILES_DIR}/{name}.v{version}.{uuid.uuid4().hex[:8]}.npy"
        info = self.storage.put_array(self._rel(path), arr, fresh=True)
        return FileEntry(name=name, version=version, path=path, sha256=info["sha256"], bytes=info["bytes"],
                         dtype=info["dtype"], shape=tuple(info["shape"]))

    # ---- committing (one writer)

    def commit(self, entries: Iterable[FileEntry], meta: dict | None = None, *,
               base_version: int | None = None) -> Manifest:
        """Commit ``entries`` (from :meth:`write`) as version ``head + 1``; names not in
        ``entries`` keep their committed files; ``meta`` replaces the committed meta
        (kept when ``None``). ``base_version``: refuse (:class:`StaleWrite`) unless the
        head is still that version. Then garbage-collects (:meth:`gc`; a failure there is
        logged, not raised: the commit has happened).

        Call from one process only (the driver): see the module docstring."""
        entries = list(entries)
        head = self.head()
        if base_version is not None and head.version != base_version:
            raise StaleWrite(f"{self.storage.uri}/{self.prefix}: commit built on version {base_version}, "
                             f"but version {head.version} is committed")
        files = dict(head.files)
        seen: set[str] = set()
        for e in entries:
            if e.name in seen:
                raise StorageError(f"{e.name!r} appears twice in one commit")
            seen.add(e.name)
            committed = head.files[e.name].version if e.name in head.files else 0
            if e.version != committed + 1:
                raise StaleWrite(f"{self.storage.url(self._rel(e.path))}: {e.name!r} version {e.version} was written "
                                 f"from version {e.version - 1}, but version {committed} is committed "
                                 "(a late or duplicate write; not committed)")
            rel = self._rel(e.path)
            size = self.storage.size(rel)
            if size is None:
                raise StorageError(f"{self.storage.url(rel)}: missing; cannot commit {e.name!r}")
            if size != e.bytes:
                raise StorageError(f"{self.storage.url(rel)}: {size} bytes, {e.bytes} were written; "
                                   f"cannot commit {e.name!r}")
            files[e.name] = e
        self.storage.sync_dirs([self._rel(e.path) for e in entries])
        new = Manifest(version=head.version + 1, files=files, meta=dict(head.meta if meta is None else meta))
        doc = new.to_dict()
        self.storage.put_json(self._rel(f"{VERSIONS_DIR}/v{new.version:010d}.json"), doc)
        self.storage.put_json(self._rel(VERSION_FILE), doc)  # the commit point
        log.debug("committed %s version %d (%d files written)", self, new.version, len(entries))
        try:
            self.gc(new)
        except StorageError as err:  # committed all the same; the next gc retries
            log.warning("checkpoint garbage collection failed (retried after the next commit): %s", err)
        return new

    @contextmanager
    def transaction(self, meta: dict | None = None) -> Iterator[_Transaction]:
        """Write several arrays and commit them together when the block ends (a
        whole-checkpoint commit); on an error the block's files are deleted and nothing
        is committed::

            with ckpt.transaction(meta={"epoch": 3}) as tx:
                for p in range(P):
                    tx.write(f"user/{p}/embeddings", emb[p])
            tx.manifest  # the committed Manifest
        """
        tx = _Transaction(self, self.head(), meta)
        try:
            yield tx
        except BaseException:
            for e in tx.entries:
                self.storage.delete(self._rel(e.path))
            raise
        tx.manifest = self.commit(tx.entries, tx.meta, base_version=tx.base.version)

    def _history(self) -> dict[int, str]:
        out = {}
        for rel in self.storage.list(self._rel(VERSIONS_DIR)):
            m = _HISTORY_FILE.fullmatch(rel[len(self.prefix) + 1:] if self.prefix else rel)
            if m:
                out[int(m["version"])] = rel
        return out

    def _paths(self, rel: str) -> set[str]:
        """The file paths the manifest ``rel`` names (cached: a version's manifest is
        written once; the cache forgets what :meth:`gc` and :meth:`discard_uncommitted`
        delete)."""
        cache = self._paths_cache
        if rel in cache:
            return set(cache[rel])
        try:
            m = Manifest.from_dict(self.storage.get_json(rel), self.storage.url(rel))
        except StorageError as err:
            log.warning("ignoring an unreadable checkpoint manifest: %s", err)
            return set()
        cache[rel] = frozenset(e.path for e in m.files.values())
        return set(cache[rel])

    def gc(self, head: Manifest | None = None) -> list[str]:
        """Drop manifests older than the last ``keep`` and the files only they
        reference; returns the deleted paths (relative to the prefix). Files that no
        commit ever referenced are left alone (they may be in flight)."""
        head = head if head is not None else self.head()
        oldest_kept = head.version - self.keep + 1
        pinned = {int(v) for v in head.meta.get(PINNED_KEY, [])}
        history = self._history()
        old = sorted(v for v in history if v < oldest_kept and v not in pinned)
        if not old:
            return []
        live = {e.path for e in head.files.values()}
        for v, rel in history.items():
            if (oldest_kept <= v < head.version) or v in pinned:
                live |= self._paths(rel)
        deleted = set()
        for v in old:
            for p in self._paths(history[v]) - live - deleted:
                self.storage.delete(self._rel(p))
                deleted.add(p)
        for v in old:  # only after their files: a crash in between leaves them for the next gc
            self.storage.delete(history[v])
            self._paths_cache.pop(history[v], None)
        return sorted(deleted)

    def rollback(self, version: int, meta: dict | None = None) -> Manifest:
        """Commit the files of committed ``version`` (still readable: among the last
        ``keep`` or pinned) as the new head (``head + 1``), e.g. the best epoch's state
        at the end of an early-stopped run; ``meta`` as in :meth:`commit`."""
        old = self.manifest(version)
        head = self.head()
        new = Manifest(version=head.version + 1, files=dict(old.files),
                       meta=dict(head.meta if meta is None else meta))
        doc = new.to_dict()
        self.storage.put_json(self._rel(f"{VERSIONS_DIR}/v{new.version:010d}.json"), doc)
        self.storage.put_json(self._rel(VERSION_FILE), doc)
        try:
            self.gc(new)
        except StorageError as err:
            log.warning("checkpoint garbage collection failed (retried after the next commit): %s", err)
        return new

    def delete_all(self) -> int:
        """Delete every version of this checkpoint (the commit file first, so that an
        interrupted delete leaves no commit naming a missing file); returns the count of
        files deleted. Files under the prefix that are not the checkpoint's stay."""
        n = 0
        if self.storage.exists(self._rel(VERSION_FILE)):
            self.storage.delete(self._rel(VERSION_FILE))
            n += 1
        for sub in (VERSIONS_DIR, FILES_DIR):
            for rel in self.storage.list(self._rel(sub)):
                self.storage.delete(rel)
                n += 1
        self._paths_cache.clear()
        return n

    def discard_uncommitted(self) -> list[str]:
        """Delete array files that no kept manifest references (writes a crash left
        uncommitted, and temporaries of local writes killed before their rename) and
        manifests newer than the head (a commit that crashed before its commit point);
        returns the deleted paths. Call only while no worker is writing."""
        head = self.head()
        history = self._history()
        live = {e.path for e in head.files.values()}
        for v, rel in history.items():
            if v < head.version:
                live |= self._paths(rel)
        deleted = []
        for rel in self.storage.list(self._rel(FILES_DIR)):
            p = rel[len(self.prefix) + 1:] if self.prefix else rel
            if (_DATA_FILE.fullmatch(p) and p not in live) or _TMP_FILE.fullmatch(p):
                self.storage.delete(rel)
                deleted.append(p)
        self._paths_cache.clear()
        for v, rel in history.items():
            if v > head.version:
                self.storage.delete(rel)
                deleted.append(rel[len(self.prefix) + 1:] if self.prefix else rel)
        return sorted(deleted)


class _Transaction:
    """The writes of one :meth:`PartitionCheckpoints.transaction` block."""

    def __init__(self, ckpt: PartitionCheckpoints, base: Manifest, meta: dict | None):
        self.ckpt, self.base, self.meta = ckpt, base, meta
        self.entries: list[FileEntry] = []
        self.manifest: Manifest | None = None

    def write(self, name: str, arr) -> FileEntry:
        if any(e.name == name for e in self.entries):
            raise StorageError(f"{name!r} written twice in one transaction")
        entry = self.ckpt.write(name, arr, base=self.base)
        self.entries.append(entry)
        return entry


__all__ = ["RunStorage", "PartitionCheckpoints", "FileEntry", "Manifest", "StorageError", "StaleWrite",
           "VERSION_FILE"]
