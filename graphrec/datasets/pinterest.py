"""Synthetic Pinterest-like dataset with planted interest clusters.

Generative model (all draws from one seeded ``numpy.random.Generator``):

* every user, pin, board and author belongs to one of ``clusters`` latent interest
  clusters, stored as the ground-truth column ``cluster`` (never a model feature);
* activity and popularity weights are Pareto: ``w = 1 + Pareto(a)``, so save counts per
  user (``a = user_alpha``) and saves per pin (``a = pin_alpha``) are power-law;
* each user has a primary and a secondary cluster; each save picks the primary with
  probability ``p_primary``, the secondary with ``p_secondary``, else a uniform cluster,
  then a pin of that cluster with probability proportional to pin popularity;
* pins have a noisy ``category`` (the cluster's with probability ``feature_signal``),
  ``tags`` from their cluster's tag pool mixed with global tags, a ``quality`` score and
  ``created_at``; each pin has one author and is in ``1 + Poisson(0.6)`` boards, both
  of its cluster with probability ``p_same_cluster``; users follow boards and authors
  of their interests.

Save edges are generated and written in chunks of users (``chunk_edges`` edges at a
time, Parquet row groups), so 10M+ edges take bounded memory.

Tables: ``users``, ``pins``, ``boards``, ``authors`` (``<type>_id`` int64 ids, not
contiguous), ``saves`` (user_id, pin_id, timestamp), ``pin_board`` (pin_id, board_id),
``author_pin`` (author_id, pin_id), ``follows_board`` (user_id, board_id, timestamp),
``follows_author`` (user_id, author_id, timestamp). Built by
``graphs/pinterest-synthetic.yaml``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator
from tqdm import tqdm

from graphrec.config_base import StrictConfig
from graphrec.io import atomic_dir

log = logging.getLogger(__name__)

T0 = 1_600_000_000  # 2020-09-13, start of the synthetic year
YEAR = 365 * 24 * 3600
COUNTRIES = ["US", "BR", "DE", "FR", "GB", "IN", "JP", "MX", "CA", "ES"]


def _strings(arr: np.ndarray) -> pa.Array:
    """A numpy unicode array as one Arrow string array (pyarrow converts large numpy
    string arrays into a ChunkedArray, which ListArray.from_arrays does not accept)."""
    out = pa.array(arr, type=pa.string())
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


class PinterestConfig(StrictConfig):
    """Size and generative parameters of the synthetic Pinterest-like dataset (the
    generative model is described in the module docstring)."""

    users: int = Field(2000, gt=0, description="number of users")
    pins: int = Field(5000, gt=0, description="number of pins (items); at least clusters")
    boards: int = Field(500, gt=0, description="number of boards; at least clusters")
    authors: int = Field(300, gt=0, description="number of pin authors; at least clusters")
    saves: int = Field(40000, gt=0, description="number of user→pin save edges")
    clusters: int = Field(20, gt=0, description="latent interest clusters (the ground-truth cluster column)")
    seed: int = Field(0, description="seed of the one random generator every draw comes from")
    user_alpha: float = Field(1.5, gt=0, description="Pareto shape a of user activity (saves per user); smaller is "
                              "more skewed")
    pin_alpha: float = Field(1.2, gt=0, description="Pareto shape a of pin popularity (saves per pin); smaller is "
                             "more skewed")
    p_primary: float = Field(0.7, ge=0, le=1, description="probability that a save is in the user's primary cluster")
    p_secondary: float = Field(0.2, ge=0, le=1, description="probability that a save is in the user's secondary "
                               "cluster (the rest: a uniform cluster)")
    p_same_cluster: float = Field(0.9, ge=0, le=1, description="probability that a pin's author and each of its "
                                  "boards are of the pin's cluster")
    feature_signal: float = Field(0.6, ge=0, le=1, description="probability that a pin's category is its cluster's "
                                  "(else a random one): how informative features are")
    tags_per_cluster: int = Field(12, gt=0, description="size of each cluster's tag pool")
    follows_per_user: float = Field(3.0, ge=0, description="mean boards (and authors) followed per user, scaled by "
                                    "sqrt of the user's relative activity")
    chunk_edges: int = Field(1 << 20, gt=0, description="save edges generated and written at a time (bounds memory; "
                             "one Parquet row group each)")

    @model_validator(mode="after")
    def _check(self):
        for name in ("pins", "boards", "authors"):
            if getattr(self, name) < self.clusters:
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= clusters ({self.clusters})")
        if self.p_primary + self.p_secondary > 1:
            raise ValueError("p_primary + p_secondary must be <= 1")
        return self


class ClusterSampler:
    """Draw items of a given cluster with probability proportional to their weight.

    Items are sorted by cluster; ``cum`` holds ``c + (within-cluster cumulative weight)``
    in ``(c, c + 1]``, so a draw for cluster ``c`` with ``u ~ U[0, 1)`` is one
    ``searchsorted(cum, c + u)`` — vectorised over all draws.
    """

    def __init__(self, clusters: np.ndarray, weights: np.ndarray, num_clusters: int):
        order = np.argsort(clusters, kind="stable")
        c = clusters[order]
        w = weights[order].astype(np.float64)
        totals = np.bincount(c, weights=w, minlength=num_clusters)
        cum = np.cumsum(w)
        start = np.concatenate([[0.0], np.cumsum(totals)[:-1]])
        self.cum = c + (cum - start[c]) / totals[c]
        self.order = order

    def sample(self, draw_clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        key = draw_clusters + rng.random(draw_clusters.shape[0])
        pos = np.searchsorted(self.cum, key, side="right")
        return self.order[np.minimum(pos, self.order.shape[0] - 1)]


def _ids(rng: np.random.Generator, n: int, base: int) -> np.ndarray:
    """Distinct, non-contiguous int64 ids (so id mapping is exercised)."""
    return base + rng.permutation(n).astype(np.int64) * 7 + 3


def _pareto(rng, n, a):
    return 1.0 + rng.pareto(a, n)


def _interest_clusters(rng, primary, secondary, k, cfg) -> np.ndarray:
    """Cluster of each draw for users with (primary, secondary) interests."""
    u = rng.random(primary.shape[0])
    out = rng.integers(0, k, primary.shape[0])
    out = np.where(u < cfg.p_primary + cfg.p_secondary, secondary, out)
    return np.where(u < cfg.p_primary, primary, out)


def generate_pinterest(cfg: PinterestConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Write the synthetic tables as Parquet into ``out`` (atomically). Returns row counts."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    k = cfg.clusters
    counts = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        # ---- nodes ------------------------------------------------------------------
        user_ids = _ids(rng, cfg.users, 10_000_000_000)
        pin_ids = _ids(rng, cfg.pins, 20_000_000_000)
        board_ids = _ids(rng, cfg.boards, 30_000_000_000)
        author_ids = _ids(rng, cfg.authors, 40_000_000_000)
        user_c = rng.integers(0, k, cfg.users)
        user_c2 = (user_c + rng.integers(1, max(k, 2), cfg.users)) % k
        pin_c = rng.integers(0, k, cfg.pins)
        pin_c[:k] = np.arange(k)  # every cluster has at least one pin, board and author
        board_c = rng.integers(0, k, cfg.boards)
        board_c[:k] = np.arange(k)
        author_c = rng.integers(0, k, cfg.authors)
        author_c[:k] = np.arange(k)
        user_w = _pareto(rng, cfg.users, cfg.user_alpha)
        pin_w = _pareto(rng, cfg.pins, cfg.pin_alpha)
        board_w = _pareto(rng, cfg.boards, cfg.pin_alpha)
        author_w = _pareto(rng, cfg.authors, cfg.pin_alpha)

        pq.write_table(pa.table({
            "user_id": user_ids, "cluster": user_c.astype(np.int32), "secondary_cluster": user_c2.astype(np.int32),
            "country": pa.array(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), cfg.users)]),
        }), tmp / "users.parquet")
        counts["users"] = cfg.users

        # pin features: noisy category, cluster tags mixed with global tags
        noisy = rng.random(cfg.pins) < cfg.feature_signal
        category = np.where(noisy, pin_c, rng.integers(0, k, cfg.pins))
        n_tags = 3
        tag_local = rng.integers(0, cfg.tags_per_cluster, (cfg.pins, n_tags))
        tag_ids = pin_c[:, None] * cfg.tags_per_cluster + tag_local
        global_tag = rng.random((cfg.pins, n_tags)) > cfg.feature_signal
        tag_ids = np.where(global_tag, k * cfg.tags_per_cluster + rng.integers(0, 50, (cfg.pins, n_tags)), tag_ids)
        flat = _strings(np.char.add("t", tag_ids.reshape(-1).astype(str)))
        tags = pa.LargeListArray.from_arrays(pa.array(np.arange(0, cfg.pins * n_tags + 1, n_tags, dtype=np.int64)), flat)
        pq.write_table(pa.table({
            "pin_id": pin_ids, "cluster": pin_c.astype(np.int32),
            "category": _strings(np.char.add("cat", category.astype(str))),
            "tags": tags,
            "quality": rng.beta(2, 5, cfg.pins).astype(np.float32),
            "created_at": T0 - rng.integers(0, YEAR, cfg.pins),
        }), tmp / "pins.parquet")
        counts["pins"] = cfg.pins
        pq.write_table(pa.table({
            "board_id": board_ids, "cluster": board_c.astype(np.int32),
            "title": _strings(np.char.add("board topic ", (board_c * cfg.tags_per_cluster).astype(str))),
        }), tmp / "boards.parquet")
        counts["boards"] = cfg.boards
        pq.write_table(pa.table({"author_id": author_ids, "cluster": author_c.astype(np.int32)}), tmp / "authors.parquet")
        counts["authors"] = cfg.authors

        pin_s = ClusterSampler(pin_c, pin_w, k)
        board_s = ClusterSampler(board_c, board_w, k)
        author_s = ClusterSampler(author_c, author_w, k)

        # ---- saves: chunked over users -----------------------------------------------
        per_user = rng.multinomial(cfg.saves, user_w / user_w.sum())
        chunk_of_user = (np.cumsum(per_user) - per_user) // cfg.chunk_edges
        cuts = np.flatnonzero(np.diff(chunk_of_user)) + 1
        starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [cfg.users]])
        schema = pa.schema([("user_id", pa.int64()), ("pin_id", pa.int64()), ("timestamp", pa.int64())])
        written = 0
        with pq.ParquetWriter(tmp / "saves.parquet", schema) as writer, tqdm(
            total=cfg.saves, desc="saves", unit="edges", disable=not progress, leave=False
        ) as bar:
            for lo, hi in zip(starts, ends, strict=True):
                users = np.repeat(np.arange(lo, hi), per_user[lo:hi])
                if users.size == 0:
                    continue
                draw_c = _interest_clusters(rng, user_c[users], user_c2[users], k, cfg)
                pins = pin_s.sample(draw_c, rng)
                ts = T0 + rng.integers(0, YEAR, users.size)
                writer.write_table(pa.table({"user_id": user_ids[users], "pin_id": pin_ids[pins], "timestamp": ts}, schema=schema))
                written += users.size
                bar.update(users.size)
        counts["saves"] = written

        # ---- pin-in-board, author-created-pin ------------------------------------------
        same = lambda c: np.where(rng.random(c.shape[0]) < cfg.p_same_cluster, c, rng.integers(0, k, c.shape[0]))  # noqa: E731
        n_boards = 1 + rng.poisson(0.6, cfg.pins)
        pb_pins = np.repeat(np.arange(cfg.pins), n_boards)
        pb_boards = board_s.sample(same(pin_c[pb_pins]), rng)
        pq.write_table(pa.table({"pin_id": pin_ids[pb_pins], "board_id": board_ids[pb_boards]}), tmp / "pin_board.parquet")
        counts["pin_board"] = int(pb_pins.size)
        ap_author = author_s.sample(same(pin_c), rng)
        pq.write_table(pa.table({"author_id": author_ids[ap_author], "pin_id": pin_ids}), tmp / "author_pin.parquet")
        counts["author_pin"] = cfg.pins

        # ---- follows ------------------------------------------------------------------
        for name, sampler, ids, col in (("follows_board", board_s, board_ids, "board_id"),
                                        ("follows_author", author_s, author_ids, "author_id")):
            n_follow = rng.poisson(cfg.follows_per_user * np.sqrt(user_w / user_w.mean()))
            fu = np.repeat(np.arange(cfg.users), n_follow)
            target = sampler.sample(_interest_clusters(rng, user_c[fu], user_c2[fu], k, cfg), rng)
            pair = np.unique(fu.astype(np.int64) * len(ids) + target)  # follow once per pair
            fu, target = pair // len(ids), pair % len(ids)
            pq.write_table(pa.table({"user_id": user_ids[fu], col: ids[target],
                                     "timestamp": T0 + rng.integers(0, YEAR, fu.size)}), tmp / f"{name}.parquet")
            counts[name] = int(fu.size)
    dt = time.perf_counter() - t_start
    log.info("generated pinterest-synthetic in %.1fs: %s (%.0f save edges/s)", dt, counts, counts["saves"] / max(dt, 1e-9))
    return counts
