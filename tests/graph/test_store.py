"""Graph store integrity (header/size on open, sha256 with verify), injective file
names for names that come from data, and unknown names as user errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrec.cli import main
from graphrec.errors import GraphrecError, StoreError
from graphrec.graph import GraphStore, build_graph, parse_schema
from graphrec.graph.store import (
    MAX_COMPONENT_BYTES,
    UnknownNameError,
    parse_edge_type,
    path_component,
    relation_key,
    write_store,
)

INDICES = "relations/user__rated__item/indices.npy"


@pytest.fixture
def store(tiny_schema, tiny_dir, tmp_path):
    return build_graph(parse_schema(tiny_schema), tmp_path / "g", data_dir=tiny_dir, progress=False)


def _cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def _assert_user_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)


# ---- integrity -------------------------------------------------------------------------


def _truncate(path, nbytes=4):
    data = path.read_bytes()
    path.write_bytes(data[:-nbytes])


def _break_header(path):
    data = bytearray(path.read_bytes())
    i = data.index(b"'shape'")
    data[i + 10 : i + 12] = b"??"  # the shape tuple no longer parses
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _break_header, lambda p: p.unlink(),
                                    lambda p: p.write_bytes(p.read_bytes() + b"\0" * 8)],
                         ids=["truncated", "bad-header", "missing", "trailing-bytes"])
def test_damaged_array_fails_on_open_cli_info_and_split(store, tmp_path, capsys, damage):
    bad = store.path / INDICES
    damage(bad)
    with pytest.raises(StoreError, match="indices.npy"):
        GraphStore(store.path)
    code, err = _cli(["info", str(store.path)], capsys)
    _assert_user_error(code, err, str(bad))
    code, err = _cli(["split", str(store.path), "--relation", "user:rated:item", "--out", str(tmp_path / "s")], capsys)
    _assert_user_error(code, err, str(bad))
    assert not (tmp_path / "s").exists()
    code, err = _cli(["split", str(store.path), "--random", "--out", str(tmp_path / "s")], capsys)
    _assert_user_error(code, err, str(bad))


def test_shape_disagreeing_with_manifest(store):
    p = store.path / INDICES
    arr = np.load(p)
    np.save(p, arr[:-1])  # a valid .npy, but not the array the manifest describes
    with pytest.raises(StoreError, match=r"indices\.npy: array is int32\[9\], the manifest says int32\[10\]"):
        GraphStore(store.path)


def test_same_size_byte_flip_needs_verify(store, capsys):
    p = store.path / INDICES
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01
    p.write_bytes(bytes(data))
    GraphStore(store.path)  # header and size are fine: the cheap check passes
    code, _ = _cli(["info", str(store.path), "--json"], capsys)
    assert code == 0
    with pytest.raises(StoreError, match="indices.npy: fails its sha256"):
        GraphStore(store.path, verify=True)
    code, err = _cli(["info", "--verify", str(store.path)], capsys)
    _assert_user_error(code, err, str(p), "sha256")


def test_vocab_json_checked_by_verify(store):
    vocab = next(store.path.rglob("country.vocab.json"))
    vocab.write_text(json.dumps(["<unk>", "XX", "DE", "FR"]))
    with pytest.raises(StoreError, match="country.vocab.json: fails its sha256"):
        GraphStore(store.path, verify=True)
    vocab.write_text("{not json")
    with pytest.raises(StoreError, match="country.vocab.json: corrupt JSON"):
        GraphStore(store.path).feature("user", "country")


def test_info_verify_ok(store, capsys):
    assert main(["info", "--verify", "--json", str(store.path)]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m.pop("relations"), "'relations' missing"),
    (lambda m: m["files"].update({"../x.npy": m["files"][INDICES]}), "points outside the store"),
    (lambda m: m["files"][INDICES].update(sha256="0" * 64), "checksum does not match"),
    (lambda m: m["relations"][0].update(src="nobody"), "is not a node type"),
])
def test_corrupt_manifest(store, edit, needle):
    mf = store.path / "manifest.json"
    m = json.loads(mf.read_text())
    edit(m)
    mf.write_text(json.dumps(m))
    with pytest.raises(StoreError, match=needle):
        GraphStore(store.path)


def test_store_without_layout_entries_still_opens(store, tmp_path):
    """Stores written before node "dir", feature "path" and "json_files" were recorded
    (plain names) read as before."""
    mf = store.path / "manifest.json"
    m = json.loads(mf.read_text())
    del m["json_files"]
    for entry in m["node_types"].values():
        del entry["dir"]
        for f in entry["features"].values():
            del f["path"]
    mf.write_text(json.dumps(m))
    g = GraphStore(store.path, verify=True)
    assert g.original_ids("user").tolist() == ["u1", "u2", "u3", "u4"]
    assert g.feature("user", "country").vocab[1] == "US"
    assert g.save(tmp_path / "copy").equals(g)


# ---- unknown names ---------------------------------------------------------------------


def test_unknown_names_are_user_errors_that_list_what_exists(store, tmp_path, capsys):
    with pytest.raises(UnknownNameError, match=r"unknown relation 'user:nope:item' \(store has \['user:rated:item'"):
        store.relation("user:nope:item")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch one
        store.relation(("user", "nope", "item"))
    with pytest.raises(GraphrecError, match=r"unknown node type 'usr' \(store has \['user', 'item'\]\)"):
        store.num_nodes("usr")
    with pytest.raises(GraphrecError, match="has no feature 'colour'"):
        store.feature("item", "colour")
    with pytest.raises(GraphrecError, match="has no edge attribute 'price'"):
        store.relation("user:rated:item").edge_attr("price")
    assert str(UnknownNameError("plain message")) == "plain message"
    code, err = _cli(["split", str(store.path), "--relation", "user:nope:item", "--out", str(tmp_path / "s")], capsys)
    _assert_user_error(code, err, "user:nope:item", "user:rated:item")


# ---- names from data -------------------------------------------------------------------


def test_colliding_relation_names_get_distinct_directories(tmp_path):
    """("u", "r__v", "w") and ("u__r", "v", "w") once shared relations/u__r__v__w/."""
    (tmp_path / "kg.tsv").write_text("head\trel\ttail\na\tr__v\tb\nc\tv\td\n")
    schema = {
        "nodes": {"u": {}, "u__r": {}, "w": {}},
        "relations": [
            {"name": "r__v", "source": {"path": "kg.tsv", "format": "tsv"}, "src": {"type": "u", "column": "head"},
             "dst": {"type": "w", "column": "tail"}, "missing_endpoints": "add"},
            {"name": "v", "source": {"path": "kg.tsv", "format": "tsv"}, "src": {"type": "u__r", "column": "head"},
             "dst": {"type": "w", "column": "tail"}, "missing_endpoints": "add"},
        ],
    }
    g = build_graph(parse_schema(schema), tmp_path / "g", data_dir=tmp_path, progress=False)
    keys = {r["key"] for r in g.manifest["relations"]}
    assert len(keys) == 2
    assert relation_key(("u", "r__v", "w")) != relation_key(("u__r", "v", "w"))
    for et in g.edge_types:
        assert g.relation(et).num_edges == 2


def test_writer_refuses_one_file_twice(tmp_path):
    with pytest.raises(StoreError, match="two parts of the graph map to the file a.npy"):
        write_store(tmp_path / "s", {"a.npy": np.zeros(2)}, {"node_types": {}, "relations": []},
                    json_files={"a.npy": []})
    assert not (tmp_path / "s").exists()


names = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", ".", "..", "_", "__", "a_", "_a", "a__b", "%", "%25", "%~", "a/b", "x" * 300, "x" * 301])


@settings(derandomize=True, max_examples=300, deadline=None)
@given(a=names, b=names)
def test_path_component_is_injective_and_safe(a, b):
    for dots in (False, True):
        ea, eb = path_component(a, dots), path_component(b, dots)
        assert (ea == eb) == (a == b)
        assert ea not in ("", ".", "..") and "/" not in ea and "\0" not in ea
        assert len(ea.encode()) <= MAX_COMPONENT_BYTES
        if dots:
            assert "." not in ea


@settings(derandomize=True, max_examples=300, deadline=None)
@given(x=st.tuples(names, names, names), y=st.tuples(names, names, names))
def test_relation_key_is_injective(x, y):
    assert (relation_key(x) == relation_key(y)) == (x == y)


def test_parse_edge_type():
    assert parse_edge_type("user:rated:item") == ("user", "rated", "item")
    assert parse_edge_type("entity:/film/film/genre:entity") == ("entity", "/film/film/genre", "entity")
    for bad in ("user:item", "user::item", ":r:i", "u:r:", "nocolon"):
        with pytest.raises(GraphrecError, match="must be written src:name:dst"):
            parse_edge_type(bad)
    with pytest.raises(ValueError):
        parse_edge_type("a:b")
