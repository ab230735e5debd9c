"""One test per bad-input class: the message names the file and column (and the first
offending rows), the CLI exits non-zero without a traceback, and no output is left."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from graphrec.cli import main
from graphrec.errors import DataError, GraphrecError, SchemaError
from graphrec.graph import GraphStore, build_graph, parse_schema


def _assert_nothing_left(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temp dir left behind"


def _fails(schema, data_dir, out, exc=DataError, match=None):
    with pytest.raises(exc, match=match):
        build_graph(parse_schema(schema), out, data_dir=data_dir, progress=False)
    _assert_nothing_left(out)


def _cli_fails(schema, data_dir, tmp_path, capsys, *needles):
    sp = tmp_path / "schema.yaml"
    sp.write_text(yaml.safe_dump(schema))
    out = tmp_path / "cli_out"
    code = main(["build", "--schema", str(sp), "--data", str(data_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    for n in needles:
        assert n in err
    _assert_nothing_left(out)


def test_missing_file(tiny_schema, tiny_dir, tmp_path, capsys):
    tiny_schema["relations"][0]["source"] = "ratingz.tsv"
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"ratingz\.tsv: file not found")
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "ratingz.tsv", "file not found")


def test_missing_column(tiny_schema, tiny_dir, tmp_path, capsys):
    tiny_schema["relations"][0]["weight"] = "rating"
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"ratings\.tsv: column 'rating' .* not found")
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "ratings.tsv", "'rating'")


def test_missing_feature_column(tiny_schema, tiny_dir, tmp_path):
    tiny_schema["nodes"]["user"]["features"]["zip"] = {"kind": "categorical"}
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"users\.csv: column 'zip' \(needed by node type 'user' feature 'zip'\)")


def test_unknown_node_type_in_relation(tiny_schema, tiny_dir, tmp_path, capsys):
    tiny_schema["relations"][0]["src"]["type"] = "customer"
    with pytest.raises(SchemaError, match=r"relations\[0\] \(rated\): src type 'customer' is not a node type"):
        parse_schema(tiny_schema)
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "'customer'", "schema.yaml")


def test_duplicate_node_ids(tiny_schema, tiny_dir, tmp_path, capsys):
    (tiny_dir / "users.csv").write_text("uid,age,country\nu1,1,US\nu2,2,US\nu1,3,DE\n")
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"users\.csv: column 'uid': 1 duplicate node ids: 'u1' at data rows 1, 3")
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "users.csv", "'uid'", "duplicate")


def test_edges_to_absent_nodes_error_by_default(tiny_schema, tiny_dir, tmp_path, capsys):
    with open(tiny_dir / "ratings.tsv", "a") as fh:
        fh.write("u1\t77\t1\t1\n")
    _fails(tiny_schema, tiny_dir, tmp_path / "g",
           match=r"ratings\.tsv: column 'item': 1 edges of relation 'rated' point to 'item' ids absent from .*items\.parquet.*data row 11 \(77\)")
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "ratings.tsv", "'item'", "data row 11")


def test_null_ids(tiny_schema, tiny_dir, tmp_path, capsys):
    (tiny_dir / "users.csv").write_text("uid,age,country\nu1,1,US\n,2,US\n")
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"users\.csv: column 'uid': 1 null/empty ids, first at data row 2")
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "users.csv", "'uid'", "null")


def test_nan_ids(tiny_schema, tiny_dir, tmp_path):
    pq.write_table(pa.table({"iid": [10.0, float("nan"), 30.0], "price": [1.0, 2.0, 3.0],
                             "genres": ["a", "b", "c"], "title": ["x", "y", "z"]}), tiny_dir / "items.parquet")
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"items\.parquet: column 'iid': 1 (NaN|null/empty) ids")


def test_empty_table(tiny_schema, tiny_dir, tmp_path, capsys):
    (tiny_dir / "ratings.tsv").write_text("user\titem\tstars\tts\n")
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"ratings\.tsv: table is empty")
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "ratings.tsv", "empty")


def test_wrong_types(tiny_schema, tiny_dir, tmp_path, capsys):
    # a non-numeric value in a numeric column
    (tiny_dir / "ratings.tsv").write_text("user\titem\tstars\tts\nu1\t10\tfive\t1\nu2\t20\t3\t2\n")
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"ratings\.tsv: column 'stars': expected numbers, found data row 1 \('five'\)")
    _cli_fails(tiny_schema, tiny_dir, tmp_path, capsys, "ratings.tsv", "'stars'", "'five'")


def test_fractional_ids(tiny_schema, tiny_dir, tmp_path):
    pq.write_table(pa.table({"iid": [10.0, 20.5], "price": [1.0, 2.0], "genres": ["a", "b"], "title": ["x", "y"]}),
                   tiny_dir / "items.parquet")
    _fails(tiny_schema, tiny_dir, tmp_path / "g", match=r"items\.parquet: column 'iid': ids must be integers or strings.*data row 2 \(20\.5\)")


def test_existing_output_is_never_clobbered(tiny_schema, tiny_dir, tmp_path):
    out = tmp_path / "g"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(GraphrecError, match="already exists"):
        build_graph(parse_schema(tiny_schema), out, data_dir=tiny_dir, progress=False)
    # --overwrite replaces only a directory graphrec wrote
    with pytest.raises(GraphrecError, match="did not write"):
        build_graph(parse_schema(tiny_schema), out, data_dir=tiny_dir, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    # a failing --overwrite build leaves the old store intact
    store = build_graph(parse_schema(tiny_schema), tmp_path / "g2", data_dir=tiny_dir, progress=False)
    tiny_schema["relations"][0]["weight"] = "nope"
    with pytest.raises(DataError):
        build_graph(parse_schema(tiny_schema), tmp_path / "g2", data_dir=tiny_dir, overwrite=True, progress=False)
    assert GraphStore(tmp_path / "g2", verify=True).checksum == store.checksum


def test_relation_names_from_a_column_are_stored_under_safe_names(tmp_path):
    """Knowledge-graph relation names come from data (Freebase: /film/film/genre): any
    text without ':' or control characters is a relation, stored under an encoded
    directory inside the store."""
    from graphrec.graph import GraphStore, triples_schema

    (tmp_path / "kg.tsv").write_text("a\t/film/actor\tb\nb\t..\ta\nc\tx__y\td\n")
    g = build_graph(triples_schema(tmp_path / "kg.tsv"), tmp_path / "g", progress=False)
    assert sorted(n for _, n, _ in g.edge_types) == sorted(["/film/actor", "..", "x__y"])
    for et in g.edge_types:
        assert g.relation(et).num_edges == 1
    files = [p.resolve() for p in (tmp_path / "g").rglob("*") if p.is_file()]
    assert all((tmp_path / "g").resolve() in p.parents for p in files)
    GraphStore(tmp_path / "g", verify=True)


@pytest.mark.parametrize("name", ["film:actor", "bad\x00name", "tab\x01"])
def test_relation_names_from_a_column_refused(tmp_path, name):
    from graphrec.graph import triples_schema

    (tmp_path / "kg.tsv").write_text(f"a\t{name}\tb\n")
    out = tmp_path / "g"
    with pytest.raises(DataError, match=r"kg\.tsv: column 'relation': relation names must be non-empty"):
        build_graph(triples_schema(tmp_path / "kg.tsv"), out, progress=False)
    _assert_nothing_left(out)
