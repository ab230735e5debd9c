"""Reading tables: the one place graphrec opens Parquet, CSV/TSV, RecBole atomic files
and triple files. :meth:`Table.iter_batches` streams Arrow record batches (Parquet row
groups, 16 MiB CSV blocks); :meth:`Table.read`, which the builder uses, collects the
requested columns of the whole table into one Arrow table.

RecBole atomic files are TSV with a ``name:type`` header (``user_id:token``,
``rating:float``, ``class:token_seq``); columns are exposed under ``name``. ``token`` and
``token_seq`` are read as strings, ``float`` as float64. Triple files are three
tab-separated columns exposed as ``head``, ``relation``, ``tail`` (strings); a first
line of RecBole-style or ``head relation tail`` names is skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from graphrec.errors import DataError
from graphrec.graph.schema import Source

DEFAULT_BATCH_ROWS = 1 << 20
_CSV_BLOCK_BYTES = 16 << 20

_ATOMIC_TYPES = {
    "token": pa.string(),
    "token_seq": pa.string(),
    "float": pa.float64(),
    "float_seq": pa.string(),
}
TRIPLE_COLUMNS = ("head", "relation", "tail")


def resolve_path(path: str, data_dir: str | Path | None) -> Path:
    """A schema path: absolute as is, otherwise relative to ``data_dir`` (``--data``)
    when given, else to the working directory."""
    p = Path(path).expanduser()
    if p.is_absolute() or data_dir is None:
        return p
    return Path(data_dir).expanduser() / p


class Table:
    """One source table: column names known up front (from the header or the Parquet
    schema), rows read in record batches.

    >>> t = Table(Source(path="ratings.parquet"), data_dir="data")
    >>> t.require(["user_id", "item_id"], what="relation 'rated'")
    >>> for batch in t.iter_batches(["user_id", "item_id"]): ...
    """

    def __init__(self, source: Source, data_dir: str | Path | None = None):
        self.source = source
        self.format = source.resolved_format
        self.path = resolve_path(source.path, data_dir)
        if not self.path.is_file():
            hint = f" (resolved against --data {data_dir})" if data_dir is not None else ""
            raise DataError(f"{self.path}: file not found{hint}")
        self._csv_types: dict[str, pa.DataType] = {}
        self._skip_rows = 0
        self.columns: list[str] = self._read_columns()

    def __repr__(self) -> str:
        return f"Table({str(self.path)!r}, format={self.format!r})"

    # ---- header -------------------------------------------------------------------
    def _first_line(self) -> str:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().rstrip("\r\n")

    def _delimiter(self) -> str:
        if self.source.delimiter is not None:
            return self.source.delimiter
        return "," if self.format == "csv" else "\t"

    def _read_columns(self) -> list[str]:
        fmt = self.format
        if fmt == "parquet":
            try:
                return list(pq.ParquetFile(self.path).schema_arrow.names)
            except (pa.ArrowInvalid, OSError) as err:
                raise DataError(f"{self.path}: not a readable Parquet file: {err}") from None
        first = self._first_line()
        if fmt == "atomic":
            names = []
            for field in first.split(self._delimiter()):
                if ":" not in field:
                    raise DataError(
                        f"{self.path}: RecBole atomic header field {field!r} is not 'name:type' "
                        f"(e.g. user_id:token); set format: tsv for a plain TSV"
                    )
                name, typ = field.rsplit(":", 1)
                if typ not in _ATOMIC_TYPES:
                    raise DataError(
                        f"{self.path}: column {name!r} has unknown RecBole type {typ!r} "
                        f"(known: {sorted(_ATOMIC_TYPES)})"
                    )
                names.append(name)
                self._csv_types[name] = _ATOMIC_TYPES[typ]
            self._skip_rows = 1
            return names
        if fmt == "triples":
            fields = first.split(self._delimiter())
            if len(fields) != 3:
                raise DataError(
                    f"{self.path}: a triple file has 3 tab-separated columns "
                    f"(head, relation, tail); the first line has {len(fields)}"
                )
            looks_like_header = all(":" in f for f in fields) or [f.lower() for f in fields] == list(
                TRIPLE_COLUMNS
            )
            self._skip_rows = 1 if (self.source.header and looks_like_header) else 0
            self._csv_types = {c: pa.string() for c in TRIPLE_COLUMNS}
            return list(TRIPLE_COLUMNS)
        # csv / tsv: the header is parsed as CSV (names may be quoted, as pandas and
        # pyarrow write them)
        if not self.source.header:
            raise DataError(f"{self.path}: csv/tsv sources need a header row naming the columns")
        try:
            names = next(csv.reader([first], delimiter=self._delimiter(), quotechar='"', strict=True), [])
        except csv.Error as err:
            raise DataError(f"{self.path}: cannot parse the header row: {err}") from None
        return names

    def require(self, columns, what: str) -> None:
        """Raise a :class:`DataError` naming the file and column if one is missing."""
        for col in columns:
            if col is not None and col not in self.columns:
                raise DataError(
                    f"{self.path}: column {col!r} (needed by {what}) not found; "
                    f"columns are {self.columns}"
                )

    # ---- rows ---------------------------------------------------------------------
    def iter_batches(self, columns: list[str], batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Yield record batches holding ``columns`` (in that order)."""
        columns = list(dict.fromkeys(columns))
        self.require(columns, what="this read")
        try:
            if self.format == "parquet":
                pf = pq.ParquetFile(self.path)
                for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                    yield batch
                return
            yield from self._iter_csv(columns)
        except pa.ArrowInvalid as err:
            raise DataError(f"{self.path}: cannot parse: {err}") from None

    def _iter_csv(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        no_quotes = self.format in ("atomic", "triples")
        read_opts = pacsv.ReadOptions(
            column_names=self.columns,
            skip_rows=self._skip_rows if self.format in ("atomic", "triples") else 1,
            block_size=_CSV_BLOCK_BYTES,
        )
        parse_opts = pacsv.ParseOptions(
            delimiter=self._delimiter(),
            quote_char=False if no_quotes else '"',
        )
        convert_opts = pacsv.ConvertOptions(
            include_columns=columns,
            column_types={c: t for c, t in self._csv_types.items() if c in columns},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        reader = pacsv.open_csv(self.path, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts)
        for batch in reader:
            yield batch.select(columns)

    def read(self, columns: list[str], progress=None) -> pa.Table:
        """Read ``columns`` fully into an Arrow table (chunked, zero extra copies)."""
        batches = []
        rows = 0
        for batch in self.iter_batches(columns):
            batches.append(batch)
            rows += batch.num_rows
            if progress is not None:
                progress.update(batch.num_rows)
        if batches:
            table = pa.Table.from_batches(batches)
        else:
            table = self._empty(columns)
        if rows == 0:
            raise DataError(f"{self.path}: table is empty (no data rows)")
        return table

    def _empty(self, columns):
        return pa.table({c: pa.array([], type=pa.string()) for c in columns})

    def size_bytes(self) -> int:
        return self.path.stat().st_size
