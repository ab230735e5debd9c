import pyarrow as pa
import pytest

from graphrec.errors import DataError
from graphrec.graph.schema import Source
from graphrec.graph.sources import Table


def test_csv_parquet_tsv_atomic_triples(tiny_dir):
    t = Table(Source(path="users.csv"), tiny_dir)
    assert t.columns == ["uid", "age", "country"]
    data = t.read(["uid", "age"])
    assert data.column("uid").to_pylist() == ["u1", "u2", "u3", "u4"]
    assert data.column("age").null_count == 1
    p = Table(Source(path="items.parquet"), tiny_dir).read(["iid"])
    assert p.column("iid").type == pa.int64()
    r = Table(Source(path="ratings.tsv"), tiny_dir).read(["user", "stars"])
    assert r.num_rows == 10
    a = Table(Source(path="shop.link"), tiny_dir)
    assert a.format == "atomic" and a.columns == ["item_id", "entity_id"]
    assert a.read(["item_id"]).column("item_id").type == pa.string()  # token -> string
    k = Table(Source(path="shop.kg", format="triples"), tiny_dir)
    assert k.columns == ["head", "relation", "tail"]
    assert k.read(["head"]).num_rows == 4  # RecBole header line skipped


def test_headerless_triples(tmp_path):
    (tmp_path / "kg.tsv").write_text("a\tr\tb\nb\tr\tc\n")
    t = Table(Source(path="kg.tsv", format="triples"), tmp_path)
    assert t.read(["head", "tail"]).column("head").to_pylist() == ["a", "b"]


def test_missing_file_and_column_name_the_file(tiny_dir):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        Table(Source(path="nope.csv"), tiny_dir)
    t = Table(Source(path="users.csv"), tiny_dir)
    with pytest.raises(DataError, match=r"users\.csv: column 'zip' \(needed by x\) not found"):
        t.require(["zip"], what="x")


def test_bad_atomic_header(tmp_path):
    (tmp_path / "x.inter").write_text("user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match=r"x\.inter: RecBole atomic header field 'user_id'"):
        Table(Source(path="x.inter"), tmp_path)
    (tmp_path / "y.inter").write_text("user_id:blob\n1\n")
    with pytest.raises(DataError, match="unknown RecBole type 'blob'"):
        Table(Source(path="y.inter"), tmp_path)


def test_batches_stream(tmp_path):
    rows = "\n".join(f"{i},{i * 2}" for i in range(5000))
    (tmp_path / "big.csv").write_text("a,b\n" + rows + "\n")
    t = Table(Source(path="big.csv"), tmp_path)
    total = sum(b.num_rows for b in t.iter_batches(["b"]))
    assert total == 5000
