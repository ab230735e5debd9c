import pytest
import yaml

from graphrec.errors import SchemaError
from graphrec.graph.schema import load_schema, parse_schema, triples_schema


def test_valid_schema_and_policy_defaults(tiny_schema):
    s = parse_schema(tiny_schema)
    assert s.relations[0].reverse_name("rated") == "rev_rated"
    assert s.policy(s.relations[0]) == "error"
    assert s.nodes["user"].source.resolved_format == "csv"
    assert s.nodes["item"].source.resolved_format == "parquet"


def test_unknown_key_is_an_error_naming_the_key(tiny_schema):
    tiny_schema["nodes"]["user"]["featurez"] = {}
    with pytest.raises(SchemaError, match=r"nodes\.user\.featurez: unknown key"):
        parse_schema(tiny_schema)


def test_wrong_type_is_an_error(tiny_schema):
    tiny_schema["relations"][0]["reverse"] = ["x"]
    with pytest.raises(SchemaError, match=r"relations\.0\.reverse"):
        parse_schema(tiny_schema)


def test_unknown_feature_kind(tiny_schema):
    tiny_schema["nodes"]["user"]["features"]["age"] = {"kind": "fancy"}
    with pytest.raises(SchemaError, match=r"nodes\.user\.features\.age\.kind"):
        parse_schema(tiny_schema)


def test_relation_with_unknown_node_type(tiny_schema):
    tiny_schema["relations"][0]["dst"]["type"] = "movie"
    with pytest.raises(SchemaError, match=r"dst type 'movie' is not a node type"):
        parse_schema(tiny_schema)


def test_name_xor_name_column(tiny_schema):
    tiny_schema["relations"][0]["name_column"] = "rel"
    with pytest.raises(SchemaError, match="exactly one of `name` or `name_column`"):
        parse_schema(tiny_schema)


def test_tableless_node_type_needs_add_policy(tiny_schema):
    tiny_schema["nodes"]["tag"] = {}
    tiny_schema["relations"].append({"name": "has", "source": "x.tsv", "src": {"type": "item", "column": "a"},
                                     "dst": {"type": "tag", "column": "b"}, "missing_endpoints": "error"})
    with pytest.raises(SchemaError, match="has no source table"):
        parse_schema(tiny_schema)


def test_unknown_suffix_needs_format(tmp_path, tiny_schema):
    tiny_schema["nodes"]["user"]["source"] = "users.dat"
    s = parse_schema(tiny_schema)
    with pytest.raises(SchemaError, match="cannot infer the table format"):
        _ = s.nodes["user"].source.resolved_format


def test_load_schema_file_errors(tmp_path):
    with pytest.raises(SchemaError, match="schema file not found"):
        load_schema(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [unclosed")
    with pytest.raises(SchemaError, match="not valid YAML"):
        load_schema(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(SchemaError, match="expected a mapping"):
        load_schema(scalar)


def test_yaml_roundtrip_of_shipped_schemas():
    from tests.conftest import ROOT

    for path in (ROOT / "graphs").glob("*.yaml"):
        s = load_schema(path)
        assert parse_schema(yaml.safe_load(yaml.safe_dump(s.model_dump(mode="json")))) == s


def test_triples_schema():
    s = triples_schema("kg.tsv")
    assert list(s.nodes) == ["entity"]
    assert s.relations[0].name_column == "relation"
    assert s.policy(s.relations[0]) == "add"
