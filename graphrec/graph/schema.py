"""Graph schema: which tables hold which node and relation types.

A schema is YAML validated by pydantic; unknown keys and wrong types are errors.

.. code-block:: yaml

    name: movielens-100k
    missing_endpoints: error          # default policy: error | drop | add
    nodes:
      user:
        source: ml-100k.user          # path (relative to --data) or {path, format, ...}
        id: user_id
        features:
          age: {kind: categorical, buckets: [18, 25, 35, 45, 50, 56]}
          gender: {kind: categorical}
      entity: {}                      # no table: ids come from relation endpoints
    relations:
      - name: rated
        source: ml-100k.inter
        src: {type: user, column: user_id}
        dst: {type: item, column: item_id}
        weight: rating
        timestamp: timestamp
        reverse: rated_by             # true -> "rev_rated"; false/omitted -> none
      - name_column: relation_id      # one relation per distinct value of this column
        source: ml-100k.kg
        src: {type: entity, column: head_id}
        dst: {type: entity, column: tail_id}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from graphrec.config_base import FrozenConfig, format_validation_error
from graphrec.errors import SchemaError

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

TableFormat = Literal["parquet", "csv", "tsv", "atomic", "triples"]
MissingPolicy = Literal["error", "drop", "add"]

#: RecBole atomic-file suffixes (https://recbole.io/docs/user_guide/data/atomic_files.html)
ATOMIC_SUFFIXES = {".inter", ".user", ".item", ".kg", ".link", ".net"}


class _Strict(FrozenConfig):
    """Base of the schema models: strict and immutable (:class:`graphrec.config_base.FrozenConfig`)."""


class Source(_Strict):
    """A table on disk. ``format`` is inferred from the suffix when omitted:
    ``.parquet``/``.pq`` parquet, ``.csv`` csv, ``.tsv``/``.txt`` tsv, RecBole suffixes
    (``.inter .user .item .kg .link .net``) atomic. ``triples`` (head, relation, tail TSV,
    optional header) must be named explicitly."""

    path: str = Field(description="table file, relative to --data (or absolute)")
    format: TableFormat | None = Field(None, description="parquet | csv | tsv | atomic | triples (None: from the "
                                       "file suffix)")
    delimiter: str | None = Field(default=None, min_length=1, max_length=1,
                                  description="field separator of csv/tsv tables (None: the format's own)")
    header: bool = Field(True, description="csv/tsv/triples: the first line names the columns")

    @property
    def resolved_format(self) -> str:
        if self.format is not None:
            return self.format
        suffix = Path(self.path).suffix.lower()
        if suffix in (".parquet", ".pq"):
            return "parquet"
        if suffix == ".csv":
            return "csv"
        if suffix in (".tsv", ".txt"):
            return "tsv"
        if suffix in ATOMIC_SUFFIXES:
            return "atomic"
        raise SchemaError(
            f"source {self.path!r}: cannot infer the table format from suffix {suffix!r}; "
            "set format: parquet | csv | tsv | atomic | triples"
        )


def _coerce_source(value):
    return {"path": value} if isinstance(value, str) else value


class Feature(_Strict):
    """A node feature column.

    kinds: ``categorical`` (one token -> int32 code, 0 = missing/unknown; ``buckets``
    turns a numeric column into bucket codes), ``multi_categorical`` (token list: an
    Arrow list column or a string split on ``sep``), ``numeric`` (float32, NaN missing),
    ``text`` (lower-cased word tokens -> vocabulary codes, stored like multi_categorical).
    """

    kind: Literal["categorical", "multi_categorical", "numeric", "text"] = Field(
        description="categorical | multi_categorical | numeric | text (see the class docstring)")
    column: str | None = Field(None, description="column of the node table (None: the feature's name)")
    sep: str | None = Field(None, description="multi_categorical: token separator of a string column "
                            "(None: whitespace)")
    buckets: list[float] | None = Field(None, description="categorical: strictly increasing boundaries that turn a "
                                        "numeric column into bucket codes")
    max_vocab: int | None = Field(default=None, gt=0, description="keep only the most frequent tokens (None: all); "
                                  "the rest map to code 0 (unknown)")
    invalid: Literal["error", "missing"] = Field("error", description="numeric: an unparsable value is an error, "
                                                 "or (missing) becomes NaN")

    @model_validator(mode="after")
    def _check(self):
        if self.buckets is not None:
            if self.kind != "categorical":
                raise ValueError("buckets is only valid for kind: categorical")
            if list(self.buckets) != sorted(set(self.buckets)):
                raise ValueError("buckets must be strictly increasing")
        if self.invalid != "error" and self.kind != "numeric" and self.buckets is None:
            raise ValueError("invalid: missing is only valid for numeric columns")
        if self.sep is not None and self.kind != "multi_categorical":
            raise ValueError("sep is only valid for kind: multi_categorical")
        return self


class NodeType(_Strict):
    """A node type: its ids (and features) from a table, or — without ``source`` — the ids
    the relations' endpoints name."""

    source: Source | None = Field(None, description="table of the nodes (a path or {path, format, ...}); None: "
                                  "ids come from relation endpoints")
    id: str | None = Field(None, description="id column of the source table (required with source)")
    features: dict[str, Feature] = Field(default_factory=dict, description="feature name -> feature column")

    _coerce = field_validator("source", mode="before")(_coerce_source)

    @model_validator(mode="after")
    def _check(self):
        if self.source is not None and self.id is None:
            raise ValueError("a node type with a source needs `id` (the id column)")
        if self.source is None and (self.id is not None or self.features):
            raise ValueError("`id` and `features` need a `source` table")
        for name in self.features:
            if not NAME_RE.match(name):
                raise ValueError(f"feature name {name!r} must match {NAME_RE.pattern}")
        return self


class Endpoint(_Strict):
    """One side of a relation. ``sep`` makes the column multi-valued: its values are split
    on ``sep`` (``" "`` splits on any whitespace) and every token becomes one edge, as for
    a genre list ``"Action Comedy"`` -> two ``item -has_genre-> genre`` edges."""

    type: str = Field(description="node type of this endpoint")
    column: str = Field(description="column of the relation table holding the endpoint ids")
    sep: str | None = Field(default=None, min_length=1, description="split the column on this separator: one edge "
                            "per token (\" \": any whitespace)")


class Relation(_Strict):
    """Edges ``src -name-> dst`` read from one table.

    Exactly one of ``name`` (one relation) or ``name_column`` (one relation per distinct
    value of that column, as in a knowledge-graph triple table) is given.
    """

    name: str | None = Field(None, description="relation name (one relation)")
    name_column: str | None = Field(None, description="column whose distinct values name the relations (a triple "
                                    "table)")
    source: Source = Field(description="table of the edges (a path or {path, format, ...})")
    src: Endpoint = Field(description="source endpoint: {type, column[, sep]}")
    dst: Endpoint = Field(description="destination endpoint: {type, column[, sep]}")
    weight: str | None = Field(None, description="column stored as the edge attribute `weight`")
    timestamp: str | None = Field(None, description="column stored as the edge attribute `timestamp` (chronological "
                                  "splits, recency)")
    reverse: bool | str = Field(False, description="also store the reverse view: true names it rev_<name>, a string "
                                "names it")
    missing_endpoints: MissingPolicy | None = Field(None, description="edges to ids absent from the node tables: "
                                                    "error | drop | add (None: the schema's default)")

    _coerce = field_validator("source", mode="before")(_coerce_source)

    @model_validator(mode="after")
    def _check(self):
        if (self.name is None) == (self.name_column is None):
            raise ValueError("give exactly one of `name` or `name_column`")
        if self.name is not None and not NAME_RE.match(self.name):
            raise ValueError(f"relation name {self.name!r} must match {NAME_RE.pattern}")
        if isinstance(self.reverse, str) and not NAME_RE.match(self.reverse):
            raise ValueError(f"reverse name {self.reverse!r} must match {NAME_RE.pattern}")
        if self.name_column is not None and isinstance(self.reverse, str):
            raise ValueError("with name_column, reverse must be true/false (names are rev_<name>)")
        if self.src.sep is not None and self.dst.sep is not None:
            raise ValueError("only one endpoint may be multi-valued (sep)")
        return self

    def reverse_name(self, name: str) -> str | None:
        if self.reverse is False:
            return None
        if self.reverse is True:
            return f"rev_{name}"
        return self.reverse

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"<{self.name_column}>"


class GraphSchema(_Strict):
    """A graph: its node types and the relations between them (module docstring: an example)."""

    name: str = Field("graph", description="name of the graph (recorded in the store)")
    missing_endpoints: MissingPolicy = Field("error", description="default for edges to ids absent from the node "
                                             "tables: error | drop (the edge) | add (the node)")
    nodes: dict[str, NodeType] = Field(description="node type name -> node type")
    relations: list[Relation] = Field(min_length=1, description="relations (at least one)")

    @model_validator(mode="after")
    def _check(self):
        if not self.nodes:
            raise ValueError("at least one node type is required")
        for nt in self.nodes:
            if not NAME_RE.match(nt):
                raise ValueError(f"node type name {nt!r} must match {NAME_RE.pattern}")
        for i, rel in enumerate(self.relations):
            for side in ("src", "dst"):
                t = getattr(rel, side).type
                if t not in self.nodes:
                    raise ValueError(
                        f"relations[{i}] ({rel.label}): {side} type {t!r} is not a node type "
                        f"(known: {sorted(self.nodes)})"
                    )
                if self.nodes[t].source is None and self.policy(rel) != "add":
                    raise ValueError(
                        f"relations[{i}] ({rel.label}): node type {t!r} has no source table, "
                        "so its ids come from edges: set missing_endpoints: add"
                    )
        return self

    def policy(self, rel: Relation) -> str:
        """Missing-endpoint policy of a relation; table-less node types imply ``add``."""
        if rel.missing_endpoints is not None:
            return rel.missing_endpoints
        if any(self.nodes[e.type].source is None for e in (rel.src, rel.dst)):
            return "add"
        return self.missing_endpoints


def _format_validation_error(err: ValidationError, origin: str) -> str:
    return format_validation_error(err, origin, GraphSchema)


def parse_schema(data: dict, origin: str = "<dict>") -> GraphSchema:
    """Validate a schema given as a dict (e.g. from YAML)."""
    if not isinstance(data, dict):
        raise SchemaError(f"invalid schema {origin}: expected a mapping at the top level")
    try:
        return GraphSchema.model_validate(data)
    except ValidationError as err:
        raise SchemaError(_format_validation_error(err, origin)) from None


def load_schema(path: str | Path) -> GraphSchema:
    """Read and validate a YAML schema file (``yaml.safe_load``)."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"schema file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SchemaError(f"schema {path}: not valid YAML: {err}") from None
    return parse_schema(data, origin=str(path))


def triples_schema(path: str | Path, node_type: str = "entity") -> GraphSchema:
    """Schema for a plain triple file (head, relation, tail): one node type, one
    relation per distinct relation name."""
    return parse_schema(
        {
            "name": Path(path).stem,
            "nodes": {node_type: {}},
            "relations": [
                {
                    "name_column": "relation",
                    "source": {"path": str(path), "format": "triples"},
                    "src": {"type": node_type, "column": "head"},
                    "dst": {"type": node_type, "column": "tail"},
                    "missing_endpoints": "add",
                }
            ],
        },
        origin=str(path),
    )
