"""The batch half of serving: ``graphrec recommend`` output in a key-value store.

A serving system answers "recommendations for user U" with one key lookup in a store it
already runs; graphrec writes that store from ``candidates.parquet`` (``user``,
``rank``, ``item``, ``score``; :func:`graphrec.retrieval.search.recommend`). Here the
store is SQLite (Python's standard library, one file, readable from every language):

- table ``recommendations(user TEXT PRIMARY KEY, items TEXT)`` ``WITHOUT ROWID``: one
  row per user, keyed by the user id as text, the value the JSON list ``[{"id": ...,
  "score": ...}, ...]`` best first — the ``results`` of ``graphrec serve``'s ``GET
  /recommend``, so a service can return it as it is;
- table ``meta(key, value)``: the format, the source file, ``k``, counts, creation time.

The Parquet file is read a row group at a time; a user's rows must be contiguous and
in rank order, as ``graphrec recommend`` writes them (checked). The database is written
beside its target and renamed when complete; ``--overwrite`` replaces only a store
graphrec wrote.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from graphrec.errors import GraphrecError
from graphrec.io import atomic_file

FORMAT = "graphrec-kv"
COLUMNS = ("user", "rank", "item", "score")


def _check_replaceable(db: Path) -> None:
    if not db.exists():
        return
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            fmt = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError:
        fmt = None
    if fmt is None or fmt[0] != FORMAT:
        raise GraphrecError(f"{db} exists and was not written by graphrec (no meta format {FORMAT!r}); not replacing it")


def load_sqlite(recommendations: str | Path, db: str | Path, overwrite: bool = False) -> dict:
    """Write the SQLite store ``db`` from a ``graphrec recommend`` Parquet file; returns
    ``{"users", "rows", "k", "seconds"}``."""
    src, db = Path(recommendations), Path(db)
    if not src.is_file():
        raise GraphrecError(f"{src}: no such recommendations file")
    try:
        pf = pq.ParquetFile(src)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds for a non-Parquet file
        raise GraphrecError(f"{src}: not a Parquet file ({err})") from None
    missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise GraphrecError(f"{src}: no column {missing[0]!r} (expected {', '.join(COLUMNS)}: `graphrec recommend`)")
    if overwrite:
        _check_replaceable(db)
    t0 = time.perf_counter()
    users = rows = k = 0
    with atomic_file(db, overwrite=overwrite) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
            con.execute("CREATE TABLE recommendations (user TEXT PRIMARY KEY, items TEXT NOT NULL) WITHOUT ROWID")
            pending_user, pending = None, []
            for batch in pf.iter_batches(columns=list(COLUMNS)):
                u = batch.column("user").to_numpy(zero_copy_only=False)
                rank = batch.column("rank").to_numpy()
                item = batch.column("item").to_numpy(zero_copy_only=False).tolist()
                score = batch.column("score").to_numpy().astype(np.float64).tolist()
                starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
                ends = np.r_[starts[1:], len(u)]
                out = []
                for a, b in zip(starts.tolist(), ends.tolist(), strict=True):  # one entry per user
                    key = u[a].item() if hasattr(u[a], "item") else u[a]
                    if np.any(np.diff(rank[a:b]) <= 0):
                        raise GraphrecError(f"{src}: user {key!r}'s rows are not in rank order")
                    entries = [{"id": i, "score": s} for i, s in zip(item[a:b], score[a:b], strict=True)]
                    if key == pending_user:
                        pending += entries
                        continue
                    if pending_user is not None:
                        out.append((str(pending_user), json.dumps(pending)))
                        k = max(k, len(pending))
                    pending_user, pending = key, entries
                try:
                    con.executemany("INSERT INTO recommendations VALUES (?, ?)", out)
                except sqlite3.IntegrityError:
                    dup = next(key for key, _ in out if con.execute(
                        "SELECT 1 FROM recommendations WHERE user = ?", (key,)).fetchone())
                    raise GraphrecError(f"{src}: user {dup!r}'s rows are not contiguous (sort by user, rank)") from None
                users += len(out)
                rows += batch.num_rows
            if pending_user is not None:
                try:
                    con.execute("INSERT INTO recommendations VALUES (?, ?)", (str(pending_user), json.dumps(pending)))
                except sqlite3.IntegrityError:
                    raise GraphrecError(f"{src}: user {pending_user!r}'s rows are not contiguous") from None
                users += 1
                k = max(k, len(pending))
            meta = {"format": FORMAT, "format_version": "1", "source": str(src.resolve()), "users": str(users),
                    "rows": str(rows), "k": str(k), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            con.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            con.commit()
        finally:
            con.close()
    return {"users": users, "rows": rows, "k": k, "seconds": time.perf_counter() - t0}


class RecommendationStore:
    """Read side: ``store[user]`` (or :meth:`get`) → the JSON list of ``{"id", "score"}``
    (``get`` returns ``None`` for an unknown user); one primary-key lookup."""

    def __init__(self, db: str | Path):
        self.db = Path(db)
        if not self.db.is_file():
            raise GraphrecError(f"{self.db}: no such store (see `graphrec kv load`)")
        try:
            self._con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, check_same_thread=False)
            self.meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise GraphrecError(f"{self.db}: not a graphrec key-value store ({err})") from None
        if self.meta.get("format") != FORMAT:
            raise GraphrecError(f"{self.db}: not a graphrec key-value store (meta format {self.meta.get('format')!r})")

    def get(self, user) -> list[dict] | None:
        row = self._con.execute("SELECT items FROM recommendations WHERE user = ?", (str(user),)).fetchone()
        return None if row is None else json.loads(row[0])

    def __getitem__(self, user) -> list[dict]:
        items = self.get(user)
        if items is None:
            raise KeyError(user)
        return items

    def __len__(self) -> int:
        return int(self.meta["users"])

    def close(self) -> None:
        self._con.close()
