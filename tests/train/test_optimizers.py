"""RowAdagrad (train/optimizers.py)."""

import io

import pytest
import torch

from graphrec.train.optimizers import RowAdagrad


def test_row_adagrad_hand_computed_and_sparse_equals_dense():
    w0 = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    emb = torch.nn.Embedding(3, 2, sparse=True)
    emb.weight.data.copy_(w0)
    opt = RowAdagrad(emb.parameters(), lr=0.5)
    assert opt.state[emb.weight]["sum"].shape == (3,)
    # rows 0 (twice: gradients summed) and 2; loss = sum of the looked-up values
    emb(torch.tensor([0, 0, 2])).sum().backward()
    opt.step()
    # row 0: g = [2, 2] -> s = 4, step 0.5 * g / 2 = [0.5, 0.5]; row 2: g = [1, 1] -> s = 1, step 0.5
    torch.testing.assert_close(emb.weight.detach(), torch.tensor([[0.5, 1.5], [3.0, 4.0], [4.5, 5.5]]))
    torch.testing.assert_close(opt.state[emb.weight]["sum"], torch.tensor([4.0, 0.0, 1.0]))

    dense = torch.nn.Parameter(w0.clone())
    dopt = RowAdagrad([dense], lr=0.5)
    (dense[torch.tensor([0, 0, 2])]).sum().backward()
    dopt.step()
    torch.testing.assert_close(dense.detach(), emb.weight.detach())
    # row 1's zero gradient in the dense path leaves it (and its accumulator) as it was
    torch.testing.assert_close(dopt.state[dense]["sum"], opt.state[emb.weight]["sum"])


def test_row_adagrad_refuses_what_it_cannot_update():
    with pytest.raises(ValueError, match=r"\[rows, dim\]"):
        RowAdagrad([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match="lr"):
        RowAdagrad([torch.nn.Parameter(torch.zeros(3, 2))], lr=0)


def test_row_adagrad_state_survives_a_checkpoint():
    """``state_dict`` / ``load_state_dict`` (what checkpoints store): a restored
    optimizer takes the same next step as the original."""
    torch.manual_seed(0)
    a = torch.nn.Embedding(4, 3, sparse=True)
    b = torch.nn.Embedding(4, 3, sparse=True)
    opt_a = RowAdagrad(a.parameters(), lr=0.3)
    a(torch.tensor([1, 2])).pow(2).sum().backward()
    opt_a.step()
    buf = io.BytesIO()  # through bytes, as a checkpoint file (no tensor shared with the original)
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    b.load_state_dict(saved["model"])
    opt_b = RowAdagrad(b.parameters(), lr=0.3)
    opt_b.load_state_dict(saved["opt"])
    for emb, opt in ((a, opt_a), (b, opt_b)):
        opt.zero_grad()
        emb(torch.tensor([2, 3])).pow(2).sum().backward()
        opt.step()
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(opt_a.state[a.weight]["sum"], opt_b.state[b.weight]["sum"])
