import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.models import PinSage, PinSageConv, max_margin_loss, recency_weighted_mean
from graphrec.sampling import Block, FeatureSpec, NodeFeatures, compact_blocks


def _conv(pooling):
    torch.manual_seed(0)
    return PinSageConv(3, 2, 2, pooling=pooling)


def test_conv_matches_hand_computation():
    conv = _conv("importance")
    x = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [-1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    # destination 0 pools sources 2 and 3 with importance 0.25 / 0.75; destination 1 has no neighbours
    block = Block(torch.tensor([[2, 3], [-1, -1]]), torch.tensor([[0.25, 0.75], [0.0, 0.0]]))
    out = conv(x, block)
    m = F.relu(x @ conv.Q.weight.T + conv.Q.bias)
    n0 = 0.25 * m[2] + 0.75 * m[3]
    n1 = torch.zeros(2)
    ref = torch.stack([F.relu(conv.W(torch.cat([x[0], n0]))), F.relu(conv.W(torch.cat([x[1], n1])))])
    torch.testing.assert_close(out, F.normalize(ref, dim=1))


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_pooling_variants(pooling):
    conv = _conv(pooling)
    msgs = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]])
    block = Block(torch.tensor([[0, 1, 2], [2, -1, -1]]), torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]))
    got = conv.aggregate(msgs, block)
    if pooling == "importance":
        ref0 = 0.5 * msgs[0] + 0.3 * msgs[1] + 0.2 * msgs[2]
    elif pooling == "mean":
        ref0 = msgs.mean(0)
    else:
        ref0 = msgs.max(0).values
    torch.testing.assert_close(got[0], ref0)
    torch.testing.assert_close(got[1], msgs[2])  # a single neighbour: every pooling returns it
    assert "pooling" in repr(conv)


def _random_neighborhoods(n, t, seed=0):
    rng = np.random.default_rng(seed)
    nbr = rng.integers(0, n, size=(n, t))
    nbr[rng.random((n, t)) < 0.2] = -1
    w = rng.random((n, t)).astype(np.float32) * (nbr >= 0)
    s = w.sum(1, keepdims=True)
    return nbr, np.divide(w, s, out=np.zeros_like(w), where=s > 0)


def test_layerwise_inference_equals_minibatch_forward():
    n, t = 200, 6
    spec = FeatureSpec(categorical={"c": 5}, multi_categorical={}, numeric=["x"])
    torch.manual_seed(0)
    model = PinSage(n, spec, dim=8, hidden_dim=16, num_layers=2, id_dim=4, feature_dim=3).eval()
    cat = torch.randint(0, 5, (n, 1))
    num = torch.randn(n, 2)
    from graphrec.sampling import NodeFeatures

    def feats(nodes):
        return NodeFeatures(cat[nodes], [], num[nodes])

    nbr, w = _random_neighborhoods(n, t)
    full = model.inference(feats, nbr, w, chunk=37)
    targets = np.array([5, 17, 199, 0, 63])
    nodes, blocks = compact_blocks(targets, 2, lambda v: (nbr[v], w[v]))
    with torch.no_grad():
        z = model(torch.from_numpy(nodes[0]), feats(torch.from_numpy(nodes[0])), blocks)
    torch.testing.assert_close(z, full[torch.from_numpy(targets)], atol=1e-5, rtol=1e-5)
    assert full.shape == (n, 8)
    torch.testing.assert_close(full.norm(dim=1), torch.ones(n))


def test_reset_parameters_and_repr():
    model = PinSage(10, FeatureSpec(), dim=4, hidden_dim=4, num_layers=1, id_dim=4)
    before = model.G2.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.G2.weight)
    assert "layers=1" in repr(model)
    with pytest.raises(ValueError, match="ID embedding"):
        PinSage(10, FeatureSpec(), id_dim=0)


def test_max_margin_loss_hand_computed():
    zq = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    zp = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    zs = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    zh = torch.tensor([[[0.9, 0.0]], [[0.0, 0.2]]])
    mask = torch.tensor([[True, True], [True, False]])
    loss = max_margin_loss(zq, zp, zs, zh, margin=0.2, shared_mask=mask)
    # query 0: pos 1.0; shared 0.5, 0.0 -> 0, 0; hard 0.9 -> 0.1   => 0.1 / 3
    # query 1: pos 0.5; shared 0.5 -> 0.2 (second masked); hard 0.2 -> 0  => 0.2 / 2
    assert float(loss) == pytest.approx((0.1 / 3 + 0.2 / 2) / 2)


def test_recency_weighted_mean():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    indptr = np.array([0, 2, 2, 3])
    indices = np.array([0, 1, 2])
    ts = np.array([20, 10, 5])  # user 0 saw item 1 first, then item 0
    u = recency_weighted_mean(items, indptr, indices, ts, half_life=1.0)
    torch.testing.assert_close(u[0], (1.0 * items[0] + 0.5 * items[1]) / 1.5)
    torch.testing.assert_close(u[1], torch.zeros(2))  # no items
    torch.testing.assert_close(u[2], items[2])
    plain = recency_weighted_mean(items, indptr, indices, ts, half_life=None)
    torch.testing.assert_close(plain[0], items[:2].mean(0))


def test_learned_norm_scales_unit_outputs():
    spec = FeatureSpec()
    torch.manual_seed(0)
    model = PinSage(30, spec, dim=8, hidden_dim=8, num_layers=1, id_dim=4, learned_norm=True).eval()
    nbr, w = _random_neighborhoods(30, 4)
    z = model.inference(lambda nodes: None, nbr, w)
    norms = z.norm(dim=1)
    assert (norms > 0).all() and (norms < 1).all() and norms.std() > 0
    assert "learned_norm" in repr(model)
    with pytest.raises(ValueError, match="needs normalize_output"):
        PinSage(30, spec, id_dim=4, normalize_output=False, learned_norm=True)


def test_recency_weighted_mean_equals_the_gathered_sum_without_an_edges_by_dim_array():
    """The sparse product gives the per-edge formula's result (duplicates, users without
    items in the middle and at the end included)."""
    from graphrec.graph.csr import row_ages

    rng = np.random.default_rng(0)
    deg = rng.integers(0, 6, 40)
    deg[[3, 17, 39]] = 0
    indptr = np.r_[0, np.cumsum(deg)]
    indices = rng.integers(0, 25, indptr[-1])
    ts = rng.integers(0, 1000, indptr[-1])
    items = torch.randn(25, 7)
    got = recency_weighted_mean(items, indptr, indices, ts, half_life=3.0)
    user = np.repeat(np.arange(40), deg)
    w = torch.from_numpy(np.power(0.5, row_ages(indptr, ts) / 3.0).astype(np.float32))
    want = torch.zeros(40, 7).index_add_(0, torch.from_numpy(user), items[torch.from_numpy(indices)] * w[:, None])
    want /= torch.zeros(40).index_add_(0, torch.from_numpy(user), w).clamp_min(1e-12)[:, None]
    torch.testing.assert_close(got, want)
    assert not got[[3, 17, 39]].any()


def test_absent_ids_and_id_dropout():
    """Row ``-1`` gives a zero ID vector (an item the model never saw); ``id_dropout``
    hides IDs at that rate in training only."""
    from graphrec.models.pinsage import PinSageInput

    spec = FeatureSpec(categorical={"c": 4}, numeric=["x"])
    inp = PinSageInput(10, spec, id_dim=6, feature_dim=3, out_dim=5, id_dropout=0.5)
    feats = NodeFeatures(torch.tensor([[1], [2], [3]]), [], torch.randn(3, 2))
    inp.eval()
    with_ids = inp(torch.tensor([0, 4, 9]), feats)
    without = inp(torch.tensor([-1, -1, -1]), feats)
    zero_id = inp.proj(torch.cat([torch.zeros(3, 6), inp.cat_emb[0](feats.categorical[:, 0]), feats.numeric], 1))
    torch.testing.assert_close(without, zero_id)
    assert not torch.allclose(with_ids, without)
    torch.testing.assert_close(inp(torch.tensor([0, 4, 9]), feats), with_ids)  # eval: no dropout
    inp.train()
    torch.manual_seed(0)
    nodes = torch.zeros(4000, dtype=torch.long)
    big = NodeFeatures(torch.ones(4000, 1, dtype=torch.long), [], torch.zeros(4000, 2))
    out = inp(nodes, big)
    dropped = torch.isclose(out, inp.proj(torch.cat([torch.zeros(1, 6), inp.cat_emb[0](torch.tensor([1])),
                                                      torch.zeros(1, 2)], 1))).all(1)
    assert 0.45 < dropped.float().mean() < 0.55
    with pytest.raises(ValueError, match="id_dropout"):
        PinSageInput(10, spec, 6, 3, 5, id_dropout=1.0)
