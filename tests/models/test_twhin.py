import pytest
import torch

from graphrec.models import TwHIN

NODES = {"user": 5, "item": 7, "tag": 3}
RELS = [("user", "rated", "item"), ("item", "has", "tag")]


def test_offsets_types_and_repr():
    m = TwHIN(NODES, RELS, dim=8)
    assert m.offsets == {"user": 0, "item": 5, "tag": 12}
    assert m.node_emb.weight.shape == (15, 8) and m.rel_emb.weight.shape == (2, 8)
    assert m.node_embeddings("item").shape == (7, 8)
    assert "TwHIN(nodes: user=5, item=7, tag=3; relations=2, dim=8" in repr(m)
    assert m.score_tails(RELS[0], torch.tensor([0, 4])).shape == (2, 7)
    assert m.score_heads(RELS[1], torch.tensor([2])).shape == (1, 7)
    with pytest.raises(ValueError, match="even dim"):
        TwHIN(NODES, RELS, dim=7, score="complex")


def test_forward_matches_score_tails():
    m = TwHIN(NODES, RELS, dim=8, score="transe")
    heads = torch.tensor([0, 3])
    full = m.score_tails(RELS[0], heads)
    tails = torch.tensor([6, 1])
    torch.testing.assert_close(m(RELS[0], heads, tails), full[torch.arange(2), tails], rtol=1e-5, atol=1e-5)


def test_loss_produces_one_sparse_gradient_touching_only_used_rows():
    m = TwHIN(NODES, RELS, dim=8)
    loss = m.loss(RELS[1], torch.tensor([0, 1]), torch.tensor([2, 0]), neg_tails=torch.tensor([1]),
                  neg_heads=torch.tensor([6]))
    loss.backward()
    g = m.node_emb.weight.grad
    assert g.is_sparse
    rows = set(g.coalesce().indices()[0].tolist())
    # heads are items (offset 5), tails/negative tails are tags (offset 12): no user rows
    assert rows <= {5, 6, 11, 12, 13, 14} and not rows & {0, 1, 2, 3, 4}


@pytest.mark.parametrize("loss", ["softmax", "softplus", "margin"])
@pytest.mark.parametrize("chunk", [0, 2])
def test_losses_decrease_on_a_fixed_batch(loss, chunk):
    torch.manual_seed(0)
    m = TwHIN(NODES, RELS, dim=16)
    opt = torch.optim.Adagrad(m.parameters(), lr=0.2)
    heads, tails = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 1, 2, 3, 4])
    neg = torch.tensor([5, 6])
    first = None
    for _ in range(30):
        opt.zero_grad()
        val = m.loss(RELS[0], heads, tails, neg_tails=neg, neg_heads=torch.tensor([0]), loss=loss, chunk_size=chunk)
        val.backward()
        opt.step()
        first = first if first is not None else val.item()
    assert val.item() < first


def test_chunked_in_batch_masks_self_and_padding():
    m = TwHIN(NODES, RELS, dim=4)
    h = torch.randn(5, 4)
    t = torch.randn(5, 4)
    r = torch.randn(4)
    neg, valid = m._in_batch_scores("tail", h, r, t, chunk=2)
    assert neg.shape == (5, 2)
    # row 4 is alone in the last chunk: no valid in-batch negative
    assert valid.tolist() == [[False, True], [True, False], [False, True], [True, False], [False, False]]
    torch.testing.assert_close(neg[1, 0], m.score_fn.pair(h[1:2], r, t[0:1])[0])


def test_n3_regulariser_hand_computed():
    # real scores: |h|³ + |r|³ + |t|³ summed over coordinates, averaged over the B positives
    m = TwHIN({"e": 4}, [("e", "r", "e")], dim=2, score="distmult")
    h = torch.tensor([[1.0, -2.0], [0.0, 1.0]])
    t = torch.tensor([[0.5, 0.0], [-1.0, 1.0]])
    r = torch.tensor([2.0, -1.0])
    # per triple: (1 + 8) + (8 + 1) + 0.125 = 18.125 and 1 + 9 + 2 = 12 -> mean 15.0625
    assert m.n3(h, r, t).item() == pytest.approx((18.125 + 12.0) / 2)
    # complex: moduli of (re, im) pairs, h = 3+4i -> 5, r = 0+1i -> 1, t = 1+0i -> 1
    c = TwHIN({"e": 4}, [("e", "r", "e")], dim=2, score="complex")
    assert c.n3(torch.tensor([[3.0, 4.0]]), torch.tensor([0.0, 1.0]), torch.tensor([[1.0, 0.0]])).item() == \
        pytest.approx(125.0 + 1.0 + 1.0)
    # RotatE relations are phases of modulus 1: nothing to regularise
    ro = TwHIN({"e": 4}, [("e", "r", "e")], dim=2, score="rotate")
    assert ro.n3(torch.tensor([[3.0, 4.0]]), torch.tensor([0.7]), torch.tensor([[1.0, 0.0]])).item() == \
        pytest.approx(125.0 + 1.0)


def test_loss_adds_the_n3_penalty_of_the_positives_only():
    torch.manual_seed(0)
    m = TwHIN(NODES, RELS, dim=8, score="complex")
    heads, tails, neg = torch.tensor([0, 3]), torch.tensor([1, 6]), torch.tensor([2, 4, 5])
    base = m.loss(RELS[0], heads, tails, neg_tails=neg, in_batch=False, corrupt="tail")
    reg = m.loss(RELS[0], heads, tails, neg_tails=neg, in_batch=False, corrupt="tail", regularization=0.1,
                 regularizer="n3")
    want = 0.1 * m.n3(m.embed("user", heads), m.relation_embedding(RELS[0]), m.embed("item", tails))
    torch.testing.assert_close(reg - base, want)
    with pytest.raises(ValueError, match="unknown regularizer"):
        m.loss(RELS[0], heads, tails, neg_tails=neg, regularization=0.1, regularizer="n2")


@pytest.mark.parametrize("score", ["complex", "distmult", "transe"])
def test_every_node_softmax_equals_the_masked_negative_path(score):
    # 1-N scoring (negatives = arange(N), a plain cross-entropy) is the same loss as the
    # general path over the same candidate set given in another order (positive masked)
    torch.manual_seed(0)
    m = TwHIN(NODES, RELS, dim=8, score=score)
    heads, tails = torch.tensor([0, 3, 4]), torch.tensor([1, 6, 1])
    every_item, every_user = torch.arange(7), torch.arange(5)
    fast = m.loss(RELS[0], heads, tails, neg_tails=every_item, neg_heads=every_user, in_batch=False)
    slow = m.loss(RELS[0], heads, tails, neg_tails=every_item.flip(0), neg_heads=every_user.flip(0), in_batch=False)
    torch.testing.assert_close(fast, slow)


@pytest.mark.parametrize("every", [True, False])
def test_a_negative_offset_counts_each_candidate_e_to_the_c_times(every):
    # neg_offset c on the tail side: -log(e^p / (e^p + e^c · Σ_j e^{n_j})) by hand, on the
    # 1-N path (every item, the positive among them) and on the masked path (a reversed
    # copy, so not taken for every node); the head side untouched
    torch.manual_seed(0)
    m = TwHIN(NODES, RELS, dim=8, score="translation_dot")
    heads, tails = torch.tensor([0, 3, 4]), torch.tensor([1, 6, 1])
    cand = torch.arange(7) if every else torch.arange(7).flip(0)
    c = 1.3
    got = m.loss(RELS[0], heads, tails, neg_tails=cand, in_batch=False, corrupt="tail", neg_offset=(c, 5.0))
    with torch.no_grad():
        scores = m.score_tails(RELS[0], heads)  # [3, 7]
        pos = scores[torch.arange(3), tails]
        negs = scores.masked_fill(torch.nn.functional.one_hot(tails, 7).bool(), float("-inf"))
        want = (-pos + torch.logaddexp(pos, c + torch.logsumexp(negs, 1))).mean()
    torch.testing.assert_close(got.detach(), want)
    plain = m.loss(RELS[0], heads, tails, neg_tails=cand, in_batch=False, corrupt="tail")
    assert got > plain


def test_a_uniform_sample_that_looks_like_arange_is_not_taken_for_every_node():
    # one uniform negative that happens to be id 0 of a 7-item type: the general path
    m = TwHIN(NODES, RELS, dim=8, score="complex")
    loss = m.loss(RELS[0], torch.tensor([0, 1]), torch.tensor([5, 6]), neg_tails=torch.tensor([0]), in_batch=False,
                  corrupt="tail")
    assert torch.isfinite(loss)


@pytest.mark.parametrize("score", ["complex", "translation_dot", "transe", "rotate"])
def test_a_batch_of_several_relations_scores_each_positive_with_its_own(score):
    """``relations=[B]``: a batch mixing the relations between two node types is the
    size-weighted mean of the per-relation losses against the same candidates, N3
    included (no in-batch negatives: those differ by construction); with chunked in-batch
    negatives, positive i's score of positive j's tail uses i's relation."""
    torch.manual_seed(0)
    rels = [("user", "rated", "item"), ("user", "saved", "item")]
    m = TwHIN(NODES, rels, dim=8, score=score)
    h1, t1, h2, t2 = torch.tensor([0, 3, 4]), torch.tensor([1, 6, 1]), torch.tensor([2, 1]), torch.tensor([5, 0])
    neg_t, neg_h = torch.tensor([2, 4, 5]), torch.tensor([1, 4])
    kw = dict(neg_tails=neg_t, neg_heads=neg_h, in_batch=False, regularization=0.01, regularizer="n3")
    l1, l2 = m.loss(rels[0], h1, t1, **kw), m.loss(rels[1], h2, t2, **kw)
    mixed = m.loss(rels[0], torch.cat([h1, h2]), torch.cat([t1, t2]), relations=torch.tensor([0, 0, 0, 1, 1]), **kw)
    torch.testing.assert_close(mixed, (3 * l1 + 2 * l2) / 5)
    h, t = m.embed("user", torch.cat([h1, h2])), m.embed("item", torch.cat([t1, t2]))
    r = m.rel_emb.weight[torch.tensor([0, 0, 0, 1, 1])]
    neg, valid = m._in_batch_scores("tail", h, r, t, chunk=2)
    # chunks {0, 1}, {2, 3}, {4}: row 3 (relation 1) against row 2's tail
    torch.testing.assert_close(neg[3, 0], m.score_fn.pair(h[3:4], r[3], t[2:3])[0])
    torch.testing.assert_close(neg[2, 1], m.score_fn.pair(h[2:3], r[2], t[3:4])[0])
    assert valid[3].tolist() == [True, False]
