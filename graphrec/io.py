"""Writing outputs so that nothing is lost or half-written.

One family of helpers used by every writer in graphrec:

* :func:`atomic_dir` / :func:`atomic_file`: build beside the destination (a hidden
  temporary sibling), ``fsync`` the new files, then rename into place; on error the
  temporary is removed and the destination is untouched. ``overwrite`` replaces an
  existing destination **only after** the new one is complete, and only a directory that
  graphrec wrote (:func:`check_replaceable`).
* :func:`write_json`, :func:`write_npy`, :func:`write_bytes`: one file, atomically.
* :class:`OutputLock`: one job per output or run directory; a second one gets a clear
  error naming the holder's pid; a dead holder's lock is taken over.
* :func:`mark_graphrec_dir` / :func:`is_graphrec_dir`: the marker file that proves a
  directory is graphrec's (so ``--overwrite`` may replace it).
* :func:`portable_path` / :func:`resolve_portable`: references between outputs that
  survive moving the directory that holds them.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graphrec.errors import GraphrecError

MARKER = ".graphrec"
"""File in every directory graphrec writes (JSON: ``{"kind": ...}``)."""

# outputs written before the marker existed are recognised by their manifest's content
# (a file merely *named* manifest.json proves nothing)
_LEGACY_MANIFESTS = {
    "manifest.json": lambda d: str(d.get("format", "")).startswith("graphrec"),
    "run.json": lambda d: d.get("model") in ("twhin", "pinsage") and "graph_checksum" in d,
    "split.json": lambda d: "source_checksum" in d and "train_checksum" in d,
    "inference.json": lambda d: "fingerprint" in d and "shard_size" in d,
}


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (bounded memory)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # some filesystems cannot fsync a directory
        if err.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """``fsync`` every file and directory under ``root`` (so a rename that follows is
    durable: after a power loss the new name never points at unwritten blocks)."""
    root = Path(root)
    if root.is_file():
        fsync_path(root)
        return
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                fsync_path(p)
        fsync_path(Path(dirpath))


def mark_graphrec_dir(path: str | Path, kind: str) -> None:
    """Write the marker that lets ``--overwrite`` replace ``path`` later."""
    Path(path, MARKER).write_text(json.dumps({"kind": kind, "written_by": "graphrec"}) + "\n")


def is_graphrec_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory graphrec wrote: its marker, or (outputs older than
    the marker) a manifest whose content is graphrec's."""
    p = Path(path)
    if not p.is_dir() or p.is_symlink():
        return False
    if (p / MARKER).is_file():
        return True
    for name, is_ours in _LEGACY_MANIFESTS.items():
        try:
            doc = json.loads((p / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and is_ours(doc):
            return True
    return False


def check_replaceable(out: str | Path, overwrite: bool) -> None:
    """Refuse to replace ``out`` unless ``overwrite`` and graphrec wrote it.

    An empty directory counts as free. Raises :class:`GraphrecError` (exit 2)."""
    out = Path(out)
    if out.is_symlink():
        raise GraphrecError(f"{out} is a symbolic link; give the path it points to ({out.resolve()}) instead")
    if not out.exists():
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    if not overwrite:
        raise GraphrecError(f"{out} already exists (pass --overwrite to replace it)")
    if not is_graphrec_dir(out):
        what = "a file" if out.is_file() else "a directory graphrec did not write"
        raise GraphrecError(f"{out} is {what} (no {MARKER} marker); refusing to replace it even with --overwrite "
                            "- choose another output path or remove it yourself")


def make_parent(out: Path) -> None:
    """Create ``out``'s parent directories; :class:`GraphrecError` naming the path when that
    is impossible (a file in the way, no permission)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GraphrecError(f"{out}: cannot create its parent directory ({err.strerror or err})") from None


def _tmp_sibling(out: Path, tag: str) -> Path:
    return out.parent / f".{out.name}.{tag}-{uuid.uuid4().hex[:8]}"


def swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` onto ``out``; an old ``out`` is renamed aside first and
    removed only after the new one is in place."""
    fsync_tree(tmp)
    old = None
    if out.exists() or out.is_symlink():
        if out.is_dir() and not out.is_symlink():
            old = _tmp_sibling(out, "old")
            os.rename(out, old)
        else:
            os.replace(tmp, out)
            fsync_path(out.parent)
            return
    os.rename(tmp, out)
    fsync_path(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_siblings(out: Path) -> None:
    """Remove the temporary siblings (``.<name>.tmp-*``, ``.<name>.old-*``) that a killed
    job left beside ``out``; call only while holding ``out``'s :class:`OutputLock` (so no
    live job is writing them)."""
    name = glob.escape(out.name)
    olds = sorted(out.parent.glob(f".{name}.old-*"), key=lambda q: q.stat().st_mtime)
    if olds and not out.exists() and not out.is_symlink():
        # killed between moving the old output aside and moving the new one in: restore the old
        os.rename(olds.pop(), out)
    for p in [*out.parent.glob(f".{name}.tmp-*"), *olds]:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False, kind: str = "output", lock: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``out`` when the block succeeds.

    ``out`` is locked (:class:`OutputLock`) for the duration. On error the temporary
    directory is removed and ``out`` is untouched. With ``overwrite`` an existing ``out``
    that graphrec wrote is swapped out only after the new one is complete; anything else
    in the way is refused (:func:`check_replaceable`). The new directory gets graphrec's
    marker (``kind`` says what it holds).
    """
    out = Path(out)
    check_replaceable(out, overwrite)
    make_parent(out)
    holder = OutputLock(out) if lock else None
    if holder is not None:
        holder.acquire()
    try:
        if holder is not None:
            remove_stale_siblings(out)  # may restore an old output a killed swap left aside
            check_replaceable(out, overwrite)
        tmp = _tmp_sibling(out, "tmp")
        tmp.mkdir()
        try:
            yield tmp
            mark_graphrec_dir(tmp, kind)
            check_replaceable(out, overwrite)  # something may have appeared meanwhile
            swap_in(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if holder is not None:
            holder.release()


@contextmanager
def atomic_file(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path that replaces the file ``out`` when the block
    succeeds (fsync'd first; removed on error; ``out`` untouched)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise GraphrecError(f"{out} already exists (pass --overwrite to replace it)")
    if out.is_dir():
        raise GraphrecError(f"{out} is a directory; expected a file path")
    make_parent(out)
    tmp = _tmp_sibling(out, "tmp")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, out)
        fsync_path(out.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (replacing it)."""
    with atomic_file(path, overwrite=True) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (replacing it)."""
    return write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def write_npy(path: str | Path, arr) -> Path:
    """Write a numpy array to ``path`` (``.npy``) atomically (replacing it)."""
    import numpy as np

    with atomic_file(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
    return Path(path)


def portable_path(target: str | Path, base: str | Path) -> dict:
    """``{"path": absolute target, "relpath": target relative to base}``: a reference
    from a file in ``base`` that still resolves after both are moved together."""
    target, base = Path(target).resolve(), Path(base).resolve()
    return {"path": str(target), "relpath": os.path.relpath(target, base)}


def resolve_portable(ref: dict | str, base: str | Path) -> Path:
    """The target of :func:`portable_path` ``ref`` from ``base``: the relative form when
    it exists (the pair was moved together), else the absolute one."""
    if isinstance(ref, str):
        return Path(ref)
    rel = ref.get("relpath")
    if rel is not None and (Path(base) / rel).exists():
        return (Path(base) / rel).resolve()
    return Path(ref["path"])


class OutputLock:
    """An exclusive lock on an output or run directory ``path``, held by this process.

    The lock is the file ``.<name>.lock`` beside ``path`` (so it also guards a directory
    that does not exist yet), locked with ``flock`` and holding ``{"pid", "host"}``. A
    second job gets :class:`GraphrecError` naming the holder's pid. ``flock`` is released
    by the kernel when its holder dies (even by SIGKILL), so a stale lock file of a dead
    process is simply taken over. Re-entrant within one process.
    """

    _held: dict[str, int] = {}

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_path = self.path.parent / f".{self.path.name}.lock"
        self._fd: int | None = None
        self._reentered = False

    def acquire(self) -> OutputLock:
        key = str(self.lock_path.resolve())
        if key in OutputLock._held:
            self._reentered = True
            return self
        make_parent(self.lock_path)
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise GraphrecError(f"{self.lock_path}: cannot create the lock file ({err.strerror or err})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                where = f" on {holder['host']}" if holder.get("host") not in (None, socket.gethostname()) else ""
                raise GraphrecError(f"{self.path} is in use by another graphrec job (pid {holder.get('pid')}{where}, "
                                    f"lock {self.lock_path}); wait for it to finish or stop it") from None
            # a releasing holder may have unlinked the file between our open and flock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        OutputLock._held[key] = fd
        return self

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return json.loads(os.read(fd, 4096) or b"{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._reentered or self._fd is None:
            return
        OutputLock._held.pop(str(self.lock_path.resolve()), None)
        try:
            self.lock_path.unlink()
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
