import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

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
    for (ca, oa, wa), (cb, ob, wb) in zip(a.bags, b.bags, strict=True):
        assert wa is None and wb is None  # bag_weighting='mean'
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


def test_idf_bag_weights_are_a_tf_idf_weighted_mean_with_the_references_frequencies(tiny_dir, tiny_schema, tmp_path):
    """``bag_weighting="idf"``: token t of a bag weighs idf(t) / Σ idf over the bag, with
    idf(t) = ln((1 + N) / (1 + df(t))) + 1 from the reference graph (the one the model
    trained on), so a newer graph's items weigh their tokens as the training items did."""
    old = build_graph(parse_schema(tiny_schema), tmp_path / "old", data_dir=tiny_dir, progress=False)
    t = NodeFeatureTable(old, "item", ["genres"], bag_weighting="idf")
    f = old.feature("item", "genres")
    offsets, codes = np.asarray(f.offsets), np.asarray(f.codes)
    n = offsets.shape[0] - 1
    docs = [set(codes[offsets[i]:offsets[i + 1]].tolist()) for i in range(n)]
    idf = {c: np.log((1 + n) / (1 + sum(c in d for d in docs))) + 1 for c in set(codes.tolist())}
    got_codes, got_off, got_w = t.gather(np.arange(n)).bags[0]
    assert got_w is not None and got_w.dtype == torch.float32
    bounds = list(got_off.numpy()) + [got_codes.numel()]
    for i in range(n):
        c, w = got_codes[bounds[i]:bounds[i + 1]].numpy(), got_w[bounds[i]:bounds[i + 1]].numpy()
        if c.size:
            expected = np.array([idf[x] for x in c])
            np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-6)
    vocab = f.vocab  # "a" and "b" are each in 2 of the 5 items: equal weights in "a b"
    row = 0  # "a b"
    ws = dict(zip((vocab[int(x)] for x in got_codes[bounds[row]:bounds[row + 1]]),
                  got_w[bounds[row]:bounds[row + 1]].tolist(), strict=True))
    assert ws["a"] == ws["b"]
    # a newer catalogue: same items, other frequencies -> the reference's weights, not its own
    pq.write_table(pa.table({"iid": pa.array([10, 20, 30, 40, 50, 60], pa.int64()),
                             "price": [1.5, 2.0, None, 4.0, 10.0, 3.0],
                             "genres": ["a b", "b", "", "c a", None, "a a a"],
                             "title": ["Red Shoes", "blue SHOES!", "hat", None, "red hat", "red"]}),
                   tiny_dir / "items.parquet")
    new = build_graph(parse_schema(tiny_schema), tmp_path / "new", data_dir=tiny_dir, progress=False)
    enc = NodeFeatureTable(new, "item", ["genres"], reference=old, bag_weighting="idf")
    a, b = t.gather(np.arange(n)).bags[0], enc.gather(np.arange(n)).bags[0]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    own = NodeFeatureTable(new, "item", ["genres"], bag_weighting="idf").gather(np.arange(n)).bags[0]
    assert not np.allclose(own[2].numpy(), a[2].numpy())  # its own frequencies would weigh otherwise


def test_an_unknown_bag_weighting_is_refused(tiny_dir, tiny_schema, tmp_path):
    import pytest

    g = build_graph(parse_schema(tiny_schema), tmp_path / "g", data_dir=tiny_dir, progress=False)
    with pytest.raises(ValueError, match="bag_weighting"):
        NodeFeatureTable(g, "item", bag_weighting="bm25")


def test_smoothed_idf_in_node_chunks_equals_one_pass():
    from graphrec.sampling.features import smoothed_idf

    rng = np.random.default_rng(0)
    lens = rng.integers(0, 6, size=1000)
    offsets = np.r_[0, np.cumsum(lens)]
    codes = rng.integers(1, 40, size=int(offsets[-1]))
    one = smoothed_idf(offsets, codes, 40)
    np.testing.assert_array_equal(smoothed_idf(offsets, codes, 40, chunk_nodes=7), one)
    df = np.array([sum(c in set(codes[offsets[i]:offsets[i + 1]].tolist()) for i in range(1000)) for c in range(40)])
    np.testing.assert_allclose(one, np.log(1001 / (1 + df)) + 1)
