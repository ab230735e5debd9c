"""Evaluation splits: per-user chronological (recommendation) and random (link prediction).

:func:`random_split` cuts every relation's edges uniformly at random (e.g. 90/5/5 for
knowledge-graph link prediction). :func:`chronological_split`:

For every source node (user) with at least ``min_interactions`` edges, its edges sorted
by (timestamp, original order) are cut into train / valid / test: the last
``max(1, round(n * f_test))`` go to test, the ``max(1, round(n * f_valid))`` before them
to valid, the rest (at least one) to train. Users with fewer interactions keep all of
them in train. A zero fraction gives an empty part.

The split directory holds ``train/`` — a complete graph store in which the relation
(and its reverse view) contains only train edges, so a model trained on it never sees
held-out edges — and ``valid.parquet`` / ``test.parquet`` with columns ``relation``, ``src``, ``dst``
(internal ids, valid in ``train/``), ``src_id``, ``dst_id`` (original ids),
``timestamp`` and ``weight`` where the relation has them, plus ``split.json``.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from graphrec.errors import DataError, GraphrecError
from graphrec.graph.csr import build_csr, expand_indptr, reverse_csr, row_ranks
from graphrec.graph.store import EdgeType, GraphStore, format_edge_type, parse_edge_type, write_store
from graphrec.io import atomic_dir

log = logging.getLogger(__name__)

PARTS = ("train", "valid", "test")
COLD_GRAPH = "cold_graph"  # cold-item splits: the newer graph holding the cold items
COLD_ITEMS = "cold_items.parquet"  # cold-item splits: which items are cold, for which part


def split_labels(indptr: np.ndarray, timestamps: np.ndarray, fractions, min_interactions: int) -> np.ndarray:
    """Label (0 train, 1 valid, 2 test) of every edge of a CSR grouped by user (int8 ``[E]``)."""
    f_train, f_valid, f_test = fractions
    deg = np.diff(indptr)
    n_edges = int(indptr[-1])
    src = expand_indptr(indptr)
    pos = row_ranks(indptr, timestamps)  # rank by time within the user (ties: original order)
    n_test = np.where(f_test > 0, np.maximum(1, np.rint(deg * f_test)), 0).astype(np.int64)
    n_valid = np.where(f_valid > 0, np.maximum(1, np.rint(deg * f_valid)), 0).astype(np.int64)
    eligible = (deg >= min_interactions) & (deg - n_test - n_valid >= 1)
    d, nt, nv, el = deg[src], n_test[src], n_valid[src], eligible[src]
    labels = np.zeros(n_edges, dtype=np.int8)
    labels[el & (pos >= d - nt - nv)] = 1
    labels[el & (pos >= d - nt)] = 2
    return labels


@dataclass
class SplitResult:
    path: Path
    train: GraphStore
    relation: EdgeType | None
    counts: dict


def chronological_split(
    store: GraphStore,
    relation: EdgeType,
    fractions=(0.8, 0.1, 0.1),
    min_interactions: int = 3,
    out: str | Path = "split",
    overwrite: bool = False,
    cut_side_relations: bool = True,
) -> SplitResult:
    """Split ``relation`` of ``store`` per user by time and write the split directory.

    With ``cut_side_relations`` (default) every other timestamped base relation whose
    source type is the users' type loses, from the train graph, each user's edges at or
    after that user's first held-out time (e.g. ``follows`` made after the test period
    began): a model trained on the train graph then sees nothing the user did from the
    held-out period on. The cut edges are not held out; ``split.json`` counts them per
    relation (``counts.side_cut``)."""
    fractions = _check_fractions(fractions)
    if isinstance(relation, str):
        relation = parse_edge_type(relation)
    relation = tuple(relation)
    rel = store.relation(relation)  # an unknown relation: UnknownNameError listing the store's relations
    if rel.is_reverse:
        raise GraphrecError(f"{format_edge_type(relation)} is a reverse view; split its base relation instead")
    if "timestamp" not in rel.attr_names:
        raise DataError(f"relation {format_edge_type(relation)} has no timestamp column; a chronological split needs one (schema: timestamp: COLUMN)")
    indptr = np.asarray(rel.indptr)
    labels = split_labels(indptr, np.asarray(rel.edge_attr("timestamp")), fractions, min_interactions)
    src = rel.coo()[0]
    held_users = np.bincount(src[labels > 0], minlength=rel.num_src) > 0
    deg = np.diff(indptr)
    extra = {"users_split": int(held_users.sum()), "users_train_only": int(((deg > 0) & ~held_users).sum())}
    cut = side_relation_cuts(store, relation, src, np.asarray(rel.edge_attr("timestamp")), labels) \
        if cut_side_relations else {}
    extra["side_cut"] = {format_edge_type(et): int((~keep).sum()) for et, keep in cut.items()}
    info = {"kind": "chronological", "relation": list(relation), "fractions": list(fractions),
            "min_interactions": min_interactions, "cut_side_relations": cut_side_relations}
    return write_split(store, {tuple(relation): labels}, info, out, overwrite, extra, cut=cut)


def side_relation_cuts(store: GraphStore, relation: EdgeType, src: np.ndarray, timestamps: np.ndarray,
                       labels: np.ndarray) -> dict:
    """``{edge_type: keep bool [E]}`` for every other timestamped base relation leaving
    the users' type: an edge of user ``u`` is dropped when its time is at or after
    ``u``'s first held-out interaction of ``relation``."""
    n_users = store.num_nodes(relation[0])
    first_heldout = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    held = labels > 0
    hs, ht = src[held], np.asarray(timestamps, np.int64)[held]
    if hs.size:  # src comes from the CSR, so each user's edges are contiguous
        starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
        first_heldout[hs[starts]] = np.minimum.reduceat(ht, starts)
    cuts = {}
    for rel in store.relations():
        if rel.is_reverse or rel.edge_type == tuple(relation) or rel.src_type != relation[0] \
                or "timestamp" not in rel.attr_names:
            continue
        s, _ = rel.coo()
        keep = np.asarray(rel.edge_attr("timestamp"), np.int64) < first_heldout[s]
        if not keep.all():
            cuts[rel.edge_type] = keep
    return cuts


def random_split(
    store: GraphStore,
    fractions=(0.9, 0.05, 0.05),
    seed: int = 0,
    relations: list[EdgeType] | None = None,
    out: str | Path = "split",
    overwrite: bool = False,
) -> SplitResult:
    """Split the edges of every base relation (or of ``relations``) uniformly at random
    into train/valid/test (link-prediction protocol; exact counts ``round(f * E)``)."""
    fractions = _check_fractions(fractions)
    if relations is not None:
        relations = [parse_edge_type(r) if isinstance(r, str) else tuple(r) for r in relations]
        for r in relations:
            store.relation(r)  # an unknown relation: UnknownNameError listing the store's relations
    labels = {}
    for i, rel in enumerate(store.relations()):
        if rel.is_reverse or (relations is not None and rel.edge_type not in [tuple(r) for r in relations]):
            continue
        e = rel.num_edges
        perm = np.random.default_rng([seed, i]).permutation(e)
        n_valid, n_test = int(round(fractions[1] * e)), int(round(fractions[2] * e))
        lab = np.zeros(e, dtype=np.int8)
        lab[perm[:n_test]] = 2
        lab[perm[n_test : n_test + n_valid]] = 1
        labels[rel.edge_type] = lab
    if not labels:
        raise GraphrecError("no relation to split")
    info = {"kind": "random", "relation": None, "relations": [list(et) for et in labels],
            "fractions": list(fractions), "seed": seed}
    return write_split(store, labels, info, out, overwrite)


def _check_fractions(fractions) -> tuple:
    try:
        fractions = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise GraphrecError(f"fractions must be three numbers, got {fractions!r}") from None
    if len(fractions) != 3 or not all(math.isfinite(f) and f >= 0 for f in fractions) \
            or abs(sum(fractions) - 1.0) > 1e-6:
        raise GraphrecError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if fractions[0] <= 0:
        raise GraphrecError("the train fraction must be positive")
    return fractions


def given_split(store: GraphStore, valid: str | Path, test: str | Path, out: str | Path = "split",
                overwrite: bool = False) -> SplitResult:
    """A split whose held-out triples come from files (a benchmark's published
    ``valid.txt`` / ``test.txt``: head, relation, tail TSV), with ``store`` (built from
    its ``train.txt`` by ``graphrec build --triples``) as the train graph.

    Entities are matched by original id on every node type of the relation; relations by
    name. Triples naming an entity or relation that the train graph lacks cannot be
    scored: they are left out, counted in ``split.json`` (``dropped_unknown``) and logged
    with the first examples. Entities new to the test set are the inductive case, which a
    transductive link-prediction benchmark excludes as well."""
    from graphrec.graph.schema import Source
    from graphrec.graph.sources import Table

    by_name: dict[str, list] = {}
    for rel in store.relations():
        if not rel.is_reverse:
            by_name.setdefault(rel.edge_type[1], []).append(rel.edge_type)
    parts, dropped = {1: [], 2: []}, {}
    for code, part, path in ((1, "valid", valid), (2, "test", test)):
        table = Table(Source(path=str(path), format="triples")).read(["head", "relation", "tail"])
        names = table.column("relation").to_numpy(zero_copy_only=False)
        keep = np.zeros(table.num_rows, dtype=bool)
        for name in np.unique(names):
            rows = np.flatnonzero(names == name)
            for et in by_name.get(str(name), []):
                sub = table.take(pa.array(rows))
                src_type, _, dst_type = et
                src = store.lookup(src_type, sub.column("head"))
                dst = store.lookup(dst_type, sub.column("tail"))
                ok = (src >= 0) & (dst >= 0)
                keep[rows[ok]] = True
                parts[code].append(_heldout_table(store, et, src[ok], dst[ok], {}))
                rows = rows[~ok]  # a relation name shared by several edge types: try the next one
        n_drop = int((~keep).sum())
        if n_drop:
            bad = np.flatnonzero(~keep)[:3]
            examples = ", ".join("\t".join(str(table.column(c)[int(i)]) for c in ("head", "relation", "tail")) for i in bad)
            log.warning("%s: %d of %d triples name an entity or relation the train graph lacks; left out (e.g. %s)",
                        path, n_drop, table.num_rows, examples)
        dropped[part] = n_drop
    info = {"kind": "given", "relation": None, "files": {"valid": str(valid), "test": str(test)}}
    return write_split(store, {}, info, out, overwrite, {"dropped_unknown": dropped}, heldout=parts)


def _heldout_table(store: GraphStore, et, src: np.ndarray, dst: np.ndarray, attrs: dict) -> pa.Table:
    """Held-out edges as written to ``valid/test.parquet``: ``relation, src, dst, src_id,
    dst_id`` and edge attributes."""
    n = src.shape[0]
    src_type, _, dst_type = et
    cols = {"relation": pa.array(np.full(n, format_edge_type(et), dtype=object), pa.string()),
            "src": np.asarray(src, np.int64), "dst": np.asarray(dst, np.int64),
            "src_id": pa.array(store.original_ids(src_type, src)),
            "dst_id": pa.array(store.original_ids(dst_type, dst))}
    return pa.table({**cols, **attrs})


def write_split(store: GraphStore, labels: dict, info: dict, out, overwrite: bool, extra: dict | None = None,
                heldout: dict | None = None, cut: dict | None = None) -> SplitResult:
    """Write ``out/train`` (the store with only label-0 edges in the split relations and
    their reverse views) and ``out/{valid,test}.parquet`` (label 1 / 2 edges, columns
    ``relation, src, dst, src_id, dst_id`` plus edge attributes). ``heldout``
    (``{1: [tables], 2: [tables]}``) adds held-out edges that are not in ``store`` (a
    given split); ``cut`` (``{edge_type: keep bool [E]}``) removes edges of other
    relations from the train graph without holding them out (leakage cuts)."""
    arrays = dict(store.arrays())
    entries = {r["key"]: dict(r) for r in store.manifest["relations"]}
    parts = {1: list((heldout or {}).get(1, [])), 2: list((heldout or {}).get(2, []))}
    counts = {"train": 0, "valid": sum(t.num_rows for t in parts[1]), "test": sum(t.num_rows for t in parts[2])}
    for et, lab in labels.items():
        rel = store.relation(et)
        src, dst = rel.coo()
        dst = np.asarray(dst)
        counts["train"] += _keep_edges(arrays, entries, rel, lab == 0)
        for code, part in ((1, "valid"), (2, "test")):
            sel = lab == code
            counts[part] += int(sel.sum())
            parts[code].append(_heldout_table(store, et, src[sel], dst[sel],
                                              {a: np.asarray(rel.edge_attr(a))[sel] for a in rel.attr_names}))
    for et, keep in (cut or {}).items():
        _keep_edges(arrays, entries, store.relation(et), keep)
    if counts["train"] == 0 and not labels:
        counts["train"] = sum(r.num_edges for r in store.relations() if not r.is_reverse)
    counts.update(extra or {})
    meta = store.meta()
    meta["relations"] = [entries[r["key"]] for r in store.manifest["relations"]]
    info = {**info, "source_graph": str(store.path), "source_checksum": store.checksum, "counts": counts}
    meta["split"] = info
    out = Path(out)
    with _split_dir(out, overwrite) as tmp:
        write_store(tmp / "train", arrays, meta, store.json_files())
        for code, part in ((1, "valid"), (2, "test")):
            if not parts[code]:
                parts[code] = [pa.table({"relation": pa.array([], pa.string()), "src": pa.array([], pa.int64()),
                                         "dst": pa.array([], pa.int64())})]
            pq.write_table(pa.concat_tables(parts[code], promote_options="permissive"), tmp / f"{part}.parquet")
        info["train_checksum"] = GraphStore(tmp / "train").checksum
        (tmp / "split.json").write_text(json.dumps(info, indent=1))
    log.info("split %s: %s", info["kind"], counts)
    return SplitResult(out, GraphStore(out / "train"), tuple(info["relation"]) if info.get("relation") else None, counts)


@contextmanager
def _split_dir(out: Path, overwrite: bool):
    """The temporary directory beside ``out`` that a split is written into, swapped in
    on success (:func:`graphrec.io.atomic_dir`); a clear error when it cannot be made."""
    stack = ExitStack()
    try:
        tmp = stack.enter_context(atomic_dir(out, overwrite=overwrite))
    except OSError as err:  # e.g. a parent of OUT is a file, or not writable
        raise GraphrecError(f"{out}: cannot create the split directory: {err.strerror or err}") from None
    with stack:
        yield tmp


def _keep_edges(arrays: dict, entries: dict, rel, keep: np.ndarray) -> int:
    """Replace ``rel``'s arrays (CSR both ways, edge attributes) in ``arrays`` by those of
    its ``keep`` edges and fix the edge counts of it and its reverse views; returns the
    number kept."""
    key = rel.base_key
    base = f"relations/{key}"
    src, dst = rel.coo()
    indptr, indices, perm = build_csr(src[keep], np.asarray(dst)[keep], rel.num_src, rel.num_dst)
    r_indptr, r_indices, r_eid = reverse_csr(indptr, indices, rel.num_dst)
    for k in [k for k in arrays if k.startswith(base + "/")]:
        del arrays[k]
    arrays.update({f"{base}/indptr.npy": indptr, f"{base}/indices.npy": indices,
                   f"{base}/rev_indptr.npy": r_indptr, f"{base}/rev_indices.npy": r_indices,
                   f"{base}/rev_eid.npy": r_eid})
    for a in rel.attr_names:
        arrays[f"{base}/{a}.npy"] = np.asarray(rel.edge_attr(a))[keep][perm]
    n = int(keep.sum())
    for k, e in entries.items():
        if k == key or e.get("base") == key:
            e["num_edges"] = n
    return n


@dataclass
class Split:
    """A split directory opened for evaluation: the train store and held-out edges."""

    path: Path
    train: GraphStore
    relation: EdgeType | None
    info: dict

    def heldout(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(src, dst)`` internal ids (int64) of the split relation's ``valid``/``test`` edges."""
        if self.relation is None:
            raise GraphrecError(f"{self.path} is a random split of several relations; use heldout_triples()")
        return self.heldout_triples(part)[self.relation]

    def heldout_triples(self, part: str) -> dict:
        """``{edge_type: (src, dst)}`` of the held-out ``valid`` or ``test`` edges."""
        if part not in ("valid", "test"):
            raise ValueError("part must be 'valid' or 'test'")
        t = pq.read_table(self.path / f"{part}.parquet", columns=["relation", "src", "dst"])
        out = {}
        for name in pc.unique(t.column("relation")).to_pylist():  # one entry per relation type
            sub = t.filter(pc.equal(t.column("relation"), name))
            out[parse_edge_type(name)] = (sub.column("src").to_numpy(), sub.column("dst").to_numpy())
        return out

    def seen(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)`` int64 of the split relation's interactions before ``part``:
        train, and for ``test`` also valid (what a model may know when ``part`` begins)."""
        if part not in ("valid", "test"):
            raise ValueError("part must be 'valid' or 'test'")
        src, dst = self.train.relation(self.relation).coo()
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        if part == "test":
            vs, vd = self.heldout("valid")
            src, dst = np.concatenate([src, vs]), np.concatenate([dst, vd])
        return src, dst

    @property
    def has_cold_items(self) -> bool:
        """A cold-item split (:func:`cold_item_split`)."""
        return self.info.get("kind") == "cold_items"

    def _require_cold(self, part: str | None = None) -> None:
        if not self.has_cold_items:
            raise GraphrecError(f"{self.path}: not a cold-item split (make one with `graphrec split --cold-items F`)")
        if part is not None and part not in ("valid", "test"):
            raise ValueError("part must be 'valid' or 'test'")

    def cold_graph(self) -> GraphStore:
        """The newer graph holding the cold items (no interactions of theirs)."""
        self._require_cold()
        return GraphStore(self.path / COLD_GRAPH)

    def cold_heldout(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(src, dst)`` int64 of the cold items' ``valid`` / ``test`` interactions, in
        the ids of :meth:`cold_graph`."""
        self._require_cold(part)
        t = pq.read_table(self.path / f"cold_{part}.parquet", columns=["src", "dst"])
        return t.column("src").to_numpy().astype(np.int64), t.column("dst").to_numpy().astype(np.int64)

    def cold_item_ids(self, part: str) -> np.ndarray:
        """Cold-graph ids (int64, sorted) of the cold ``valid`` / ``test`` items: every
        item removed from training for that part (the candidates of the cold protocol)."""
        self._require_cold(part)
        t = pq.read_table(self.path / COLD_ITEMS, columns=["item", "part"])
        return np.sort(t.column("item").to_numpy()[t.column("part").to_numpy(zero_copy_only=False) == part]
                       ).astype(np.int64)


def load_split(path: str | Path) -> Split:
    path = Path(path)
    if not (path / "split.json").is_file():
        raise GraphrecError(f"{path}: not a split directory (no split.json); create one with `graphrec split`")
    info = json.loads((path / "split.json").read_text())
    rel = tuple(info["relation"]) if info.get("relation") else None
    return Split(path, GraphStore(path / "train"), rel, info)


def cold_items(store: GraphStore, relation: EdgeType, fraction: float, valid_fraction: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first_time [N_items], cold_test bool [N_items], cold_valid bool [N_items])``: the
    newest ``fraction`` of the items with an interaction, by the time of their first
    interaction of ``relation`` (ties: the higher internal id is newer), are the cold
    test items; the ``valid_fraction`` just older than them the cold valid items.
    Items without an interaction (``first_time`` = int64 max) are never cold."""
    rel = store.relation(relation)
    ts = np.asarray(rel.edge_attr("timestamp"), np.int64)
    _, dst = rel.coo()
    n_items = rel.num_dst
    first = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, np.asarray(dst, np.int64), ts)
    engaged = np.flatnonzero(first < np.iinfo(np.int64).max)
    order = engaged[np.lexsort((engaged, first[engaged]))]  # oldest first
    n_test = int(round(fraction * order.shape[0]))
    n_valid = int(round(valid_fraction * order.shape[0]))
    test, valid = np.zeros(n_items, bool), np.zeros(n_items, bool)
    test[order[order.shape[0] - n_test:]] = True
    valid[order[order.shape[0] - n_test - n_valid: order.shape[0] - n_test]] = True
    return first, test, valid


def cold_item_split(
    store: GraphStore,
    relation: EdgeType,
    cold_fraction: float,
    cold_valid_fraction: float = 0.0,
    fractions=(0.8, 0.1, 0.1),
    min_interactions: int = 3,
    out: str | Path = "split",
    overwrite: bool = False,
) -> SplitResult:
    """The cold-start protocol: items no model has seen.

    The newest ``cold_fraction`` of the items (by first interaction; see
    :func:`cold_items`), and the ``cold_valid_fraction`` before them, are removed from
    the train graph **entirely** (nodes, features, every edge) and their interactions
    become ``cold_test.parquet`` / ``cold_valid.parquet``. Cold valid is a backtest of
    cold test: it keeps the valid items' interactions made before the first cold test
    item appeared (items new in that window and engaged in it, as the test items are in
    theirs); the later ones are dropped and counted (``cold_valid_after_cutoff``). The
    other (warm) items' interactions are split per user by time as
    :func:`chronological_split` does, into
    ``train/``, ``valid.parquet`` and ``test.parquet`` (warm quality of the same run).

    ``cold_graph/`` is the newer graph an inductive model embeds the cold items in: the
    train graph plus the cold items with their features and every non-interaction edge
    (e.g. knowledge-graph links), but none of their interactions. Its internal ids are
    the source store's; ``cold_*.parquet`` use them (``train/`` renumbers items, so
    ``valid``/``test.parquet`` use ``train/``'s ids; original ids are in both)."""
    from graphrec.graph.subgraph import drop_nodes, renumbering

    fractions = _check_fractions(fractions)
    relation = parse_edge_type(relation) if isinstance(relation, str) else tuple(relation)
    rel = store.relation(relation)
    if rel.is_reverse:
        raise GraphrecError(f"{format_edge_type(relation)} is a reverse view; split its base relation instead")
    if "timestamp" not in rel.attr_names:
        raise DataError(f"relation {format_edge_type(relation)} has no timestamp column; a cold-item split needs one "
                        "(schema: timestamp: COLUMN)")
    for name, f in (("--cold-items", cold_fraction), ("--cold-valid-items", cold_valid_fraction)):
        if not (math.isfinite(f) and 0 <= f < 1):
            raise GraphrecError(f"{name} must be a fraction in [0, 1), got {f}")
    if cold_fraction + cold_valid_fraction >= 1 or cold_fraction <= 0:
        raise GraphrecError(f"--cold-items must be positive and leave warm items (cold {cold_fraction} + "
                            f"cold valid {cold_valid_fraction} < 1)")
    item_type = relation[2]
    first, cold_test, cold_valid = cold_items(store, relation, cold_fraction, cold_valid_fraction)
    cold = cold_test | cold_valid
    src, dst = rel.coo()
    dst = np.asarray(dst, np.int64)
    ts = np.asarray(rel.edge_attr("timestamp"), np.int64)
    warm_edge = ~cold[dst]
    # per-user chronological labels of the warm interactions (src is CSR-grouped, so is its warm subset)
    warm_indptr = np.zeros(rel.num_src + 1, dtype=np.int64)
    np.cumsum(np.bincount(src[warm_edge], minlength=rel.num_src), out=warm_indptr[1:])
    labels = np.full(src.shape[0], 3, dtype=np.int8)
    labels[warm_edge] = split_labels(warm_indptr, ts[warm_edge], fractions, min_interactions)

    arrays = dict(store.arrays())
    entries = {r["key"]: dict(r) for r in store.manifest["relations"]}
    n_train = _keep_edges(arrays, entries, rel, labels == 0)
    attrs = {a: np.asarray(rel.edge_attr(a)) for a in rel.attr_names}
    meta = store.meta()
    meta["relations"] = [entries[r["key"]] for r in store.manifest["relations"]]
    new_item = renumbering(~cold)
    tables = {}
    # cold valid is a backtest of cold test: the valid items' interactions before the first test item appeared
    # (an item new in that window, engaged in that window — as the test items are in theirs)
    cutoff = int(first[cold_test].min()) if cold_test.any() else np.iinfo(np.int64).max
    valid_sel = ~warm_edge & cold_valid[dst]
    late = valid_sel & (ts >= cutoff)
    for part, sel in (("valid", labels == 1), ("test", labels == 2), ("cold_valid", valid_sel & ~late),
                      ("cold_test", ~warm_edge & cold_test[dst])):
        t = _heldout_table(store, relation, src[sel], dst[sel], {a: v[sel] for a, v in attrs.items()})
        if not part.startswith("cold"):  # warm held-out pairs: ids of train/, which renumbers the items
            t = t.set_column(t.schema.get_field_index("dst"), "dst", pa.array(new_item[dst[sel]]))
        tables[part] = t
    held_users = np.bincount(src[(labels == 1) | (labels == 2)], minlength=rel.num_src) > 0
    counts = {"train": n_train, "valid": tables["valid"].num_rows, "test": tables["test"].num_rows,
              "cold_valid": tables["cold_valid"].num_rows, "cold_test": tables["cold_test"].num_rows,
              "cold_test_items": int(cold_test.sum()), "cold_valid_items": int(cold_valid.sum()),
              "warm_items": int((~cold).sum()), "users_split": int(held_users.sum()),
              "cold_valid_after_cutoff": int(late.sum())}
    info = {"kind": "cold_items", "relation": list(relation), "fractions": list(fractions),
            "min_interactions": min_interactions, "cold_items": cold_fraction, "cold_valid_items": cold_valid_fraction,
            "source_graph": str(store.path), "source_checksum": store.checksum, "counts": counts}
    out = Path(out)
    with _split_dir(out, overwrite) as tmp:
        meta["split"] = {**info, "graph": COLD_GRAPH}
        write_store(tmp / COLD_GRAPH, arrays, meta, store.json_files())
        cold_graph = GraphStore(tmp / COLD_GRAPH)
        t_arrays, t_meta, t_json = drop_nodes(cold_graph, item_type, ~cold)
        t_meta["split"] = {**info, "graph": "train"}
        write_store(tmp / "train", t_arrays, t_meta, t_json)
        for part, t in tables.items():
            pq.write_table(t, tmp / f"{part}.parquet")
        ci = np.flatnonzero(cold)
        pq.write_table(pa.table({"item": ci, "item_id": pa.array(store.original_ids(item_type, ci)),
                                 "part": pa.array(np.where(cold_test[ci], "test", "valid").astype(object), pa.string()),
                                 "first_timestamp": first[ci]}), tmp / COLD_ITEMS)
        info["train_checksum"] = GraphStore(tmp / "train").checksum
        info["cold_graph_checksum"] = cold_graph.checksum
        (tmp / "split.json").write_text(json.dumps(info, indent=1))
    log.info("split cold_items: %s", counts)
    return SplitResult(out, GraphStore(out / "train"), relation, counts)
