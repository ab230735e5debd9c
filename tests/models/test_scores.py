"""Score functions against hand-computed values, and their batched forms against pair()."""

import math

import pytest
import torch

from graphrec.models.scores import SCORES, make_score

h = torch.tensor([[1.0, 2.0, 0.5, -1.0]])
r = torch.tensor([0.5, -1.0, 2.0, 1.0])
t = torch.tensor([[2.0, 0.0, 1.0, 1.0]])


def test_hand_computed_values():
    # translation-dot: (h + r)·t = [1.5, 1, 2.5, 0]·[2, 0, 1, 1] = 3 + 0 + 2.5 + 0
    assert make_score("translation_dot").pair(h, r, t).item() == pytest.approx(5.5)
    # TransE L2: h + r - t = [-0.5, 1, 1.5, -1] -> -sqrt(0.25 + 1 + 2.25 + 1)
    assert make_score("transe").pair(h, r, t).item() == pytest.approx(-math.sqrt(4.5))
    assert make_score("transe", p=1).pair(h, r, t).item() == pytest.approx(-4.0)
    # DistMult: sum h*r*t = 1*.5*2 + 2*-1*0 + .5*2*1 + -1*1*1 = 1 + 0 + 1 - 1
    assert make_score("distmult").pair(h, r, t).item() == pytest.approx(1.0)
    # ComplEx with h = (1+0.5i, 2-1i), r = (0.5+2i, -1+1i), t = (2+1i, 0+1i):
    # Re(h r conj(t)) summed over the two complex dims
    hc = torch.complex(torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]))
    rc = torch.complex(torch.tensor([0.5, -1.0]), torch.tensor([2.0, 1.0]))
    tc = torch.complex(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    want = (hc * rc * tc.conj()).sum().real.item()
    assert make_score("complex").pair(h, r, t).item() == pytest.approx(want)
    # RotatE: r holds phases (d/2 = 2): -sum |h e^{i theta} - t|
    theta = torch.tensor([0.5, -1.0])
    want = -(hc * torch.polar(torch.ones(2), theta) - tc).abs().sum().item()
    assert make_score("rotate").pair(h, theta, t).item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_batched_forms_equal_pairwise(name):
    g = torch.Generator().manual_seed(0)
    d = 8
    fn = make_score(name)
    H = torch.randn(5, d, generator=g)
    T = torch.randn(7, d, generator=g)
    rv = torch.randn(fn.relation_dim(d), generator=g)
    tails = fn.tails(H, rv, T)
    heads = fn.heads(H, rv, T)
    assert tails.shape == (5, 7) and heads.shape == (7, 5)
    for i in range(5):
        for j in range(7):
            p = fn.pair(H[i : i + 1], rv, T[j : j + 1]).item()
            assert tails[i, j].item() == pytest.approx(p, rel=1e-4, abs=1e-4)
            assert heads[j, i].item() == pytest.approx(p, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("name", ["translation_dot", "transe", "distmult", "complex"])
def test_retrieval_vectors_order_like_the_score(name):
    g = torch.Generator().manual_seed(1)
    d = 8
    fn = make_score(name)
    H, T = torch.randn(6, d, generator=g), torch.randn(50, d, generator=g)
    rv = torch.randn(fn.relation_dim(d), generator=g)
    q, c = fn.retrieval(H, rv, T)
    ip = q @ c.T
    sc = fn.tails(H, rv, T)
    # identical order, and equal up to a per-query constant (affine for TransE's squared form)
    assert torch.equal(ip.argsort(dim=1, descending=True), sc.argsort(dim=1, descending=True))
    if name != "transe":
        torch.testing.assert_close(ip, sc, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["translation_dot", "transe", "distmult", "complex"])
def test_retrieval_vectors_are_row_wise_so_chunks_give_the_whole(name):
    """An export computes query/candidate vectors a chunk of rows at a time, in any row
    order: the chunks, put back in place, are the whole-table vectors."""
    g = torch.Generator().manual_seed(2)
    d = 8
    fn = make_score(name)
    H, T = torch.randn(37, d, generator=g), torch.randn(53, d, generator=g)
    rv = torch.randn(fn.relation_dim(d), generator=g)
    q, c = fn.retrieval(H, rv, T)
    for whole, rows, half in ((q, H, lambda x: fn.retrieval_queries(x, rv)), (c, T, fn.retrieval_candidates)):
        order = torch.randperm(rows.shape[0], generator=g)
        out = torch.empty_like(whole)
        for chunk in order.split(10):
            out[chunk] = half(rows[chunk])
        torch.testing.assert_close(out, whole, rtol=0, atol=1e-6)
        assert half(rows[:0]).shape == (0, whole.shape[1])  # the width without any row


@pytest.mark.parametrize("name, kwargs", [("rotate", {}), ("transe", {"p": 1})])
def test_no_inner_product_form_is_refused(name, kwargs):
    fn = make_score(name, **kwargs)
    assert not fn.has_inner_product_form
    with pytest.raises(ValueError, match="no exact inner-product form"):
        fn.retrieval(torch.zeros(1, 4), torch.zeros(fn.relation_dim(4)), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no exact inner-product form"):
        fn.retrieval_candidates(torch.zeros(2, 4))


def test_moduli_for_the_n3_regulariser():
    x = torch.tensor([[3.0, -1.0, 4.0, 0.0]])  # complex: (3 + 4i), (-1 + 0i)
    torch.testing.assert_close(make_score("complex").node_moduli(x), torch.tensor([[5.0, 1.0]]))
    torch.testing.assert_close(make_score("distmult").node_moduli(x), x.abs())
    assert make_score("rotate").relation_moduli(torch.tensor([0.3])) is None


def test_registry_and_abstract_base():
    from graphrec.models.scores import ScoreFunction

    assert SCORES.names() == ("translation_dot", "transe", "distmult", "complex", "rotate")
    assert [make_score(n).name for n in SCORES] == list(SCORES.names())
    assert [n for n in SCORES if SCORES.get(n).complex_valued] == ["complex", "rotate"]
    with pytest.raises(ValueError, match="unknown score function 'dot' .*translation_dot, transe"):
        make_score("dot")
    with pytest.raises(TypeError, match="abstract"):
        ScoreFunction()

    class Incomplete(ScoreFunction):
        def pair(self, h, r, t):
            return (h * t).sum(-1)

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


@pytest.mark.parametrize("name", ["translation_dot", "transe", "distmult", "complex", "rotate"])
def test_chunk_scores_equal_tails_and_heads_within_each_chunk(name):
    """``chunk_tails``/``chunk_heads`` (one batched matmul for the inner-product scores)
    score each chunk of in-batch negatives as ``tails``/``heads`` do on it."""
    fn = make_score(name, 2)
    g = torch.Generator().manual_seed(0)
    h, t = torch.randn(4, 5, 8, generator=g), torch.randn(4, 5, 8, generator=g)
    r = torch.randn(fn.relation_dim(8), generator=g)
    ct, ch = fn.chunk_tails(h, r, t), fn.chunk_heads(h, r, t)
    assert ct.shape == ch.shape == (4, 5, 5)
    for k in range(4):
        torch.testing.assert_close(ct[k], fn.tails(h[k], r, t[k]))
        torch.testing.assert_close(ch[k], fn.heads(h[k], r, t[k]))
