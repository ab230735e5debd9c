import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from graphrec.graph import build_graph, parse_schema
from graphrec.sampling.features import NodeFeatureTable, code_map


def test_code_map_translates_by_token():
    np.testing.assert_array_equal(code_map(["<unk>", "b", "new", "a"], ["<unk>", "a", "b"]), [0, 2, 0, 1])


def test_features_of_a_newer_graph_are_encoded_with_the_reference_vocabularies(tiny_dir, tiny_schema, tmp_path):
    """A newer catalogue: token frequencies (so codes) differ, an unseen genre and title
    word appear, prices shift. Encoded with the old graph as reference, every known
    token gets the old code, unseen categories the unknown bucket / nothing, and prices
    the old standardisation."""
    old = build_graph(parse_schema(tiny_schema), tmp_path / "old", data_dir=tiny_dir, progress=False)
    pq.write_table(pa.table({"iid": pa.array([10, 20, 30, 40, 50, 60, 70], pa.int64()),
                             "price": [1.5, 2.0, None, 4.0, 10.0, 100.0, 3.0],
                             "genres": ["a b", "b", "", "c a", None, "z z z", "c c a"],
                             "title": ["Red Shoes", "blue SHOES!", "hat", None, "red hat", "neon hat", "red"]}),
                   tiny_dir / "items.parquet")
    new = build_graph(parse_schema(tiny_schema), tmp_path / "new", data_dir=tiny_dir, progress=False)
    assert new.feature("item", "genres").vocab != old.feature("item", "genres").vocab  # "z" is now the most frequent
    ref = NodeFeatureTable(old, "item")
    enc = NodeFeatureTable(new, "item", reference=old)
    assert enc.spec.to_dict() == ref.spec.to_dict()
    both = np.arange(5)  # items 10..50 have the same internal ids in both graphs
    a, b = ref.gather(both), enc.gather(both)
    for (ca, oa), (cb, ob) in zip(a.bags, b.bags, strict=True):
        np.testing.assert_array_equal(ca.numpy(), cb.numpy())
        np.testing.assert_array_equal(oa.numpy(), ob.numpy())
    np.testing.assert_allclose(a.numeric.numpy(), b.numeric.numpy())  # the old mean and std, not the new ones
    f = enc.gather(np.array([5, 6]))
    genres, title = f.bags[0], f.bags[1]
    vocab = old.feature("item", "genres").vocab
    assert genres[0][: int(genres[1][1])].numel() == 0  # "z z z": no known genre, an empty bag
    assert [vocab[int(c)] for c in genres[0][int(genres[1][1]):]] == ["c", "c", "a"]
    tv = old.feature("item", "title").vocab
    assert [tv[int(c)] for c in title[0][: int(title[1][1])]] == ["hat"]  # "neon" is unknown: dropped
