"""TwHIN losses (graphrec/models/losses.py) against hand-computed values."""

import math

import pytest
import torch

from graphrec.models.losses import LOSSES

pos = torch.tensor([2.0, 0.0])
neg = torch.tensor([[1.0, 3.0, -1.0], [0.5, 0.5, 9.0]])
valid = torch.tensor([[True, False, True], [True, True, False]])  # masked entries must not count


def sp(x):
    return math.log1p(math.exp(x))


def test_registered_names():
    assert LOSSES.names() == ("softmax", "softplus", "margin")
    with pytest.raises(ValueError, match="unknown loss 'hinge' .*softmax, softplus, margin"):
        LOSSES.get("hinge")


def test_softmax():
    want = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(-1)))
            - math.log(1 / (1 + 2 * math.exp(0.5)))) / 2
    assert LOSSES.get("softmax")(pos, neg, valid).item() == pytest.approx(want, rel=1e-6)


def test_softplus():
    want = ((sp(-2) + (sp(1) + sp(-1)) / 2) + (sp(0) + sp(0.5))) / 2
    assert LOSSES.get("softplus")(pos, neg, valid).item() == pytest.approx(want, rel=1e-6)


def test_margin():
    # row 0: max(0, 1 - 2 + 1) = 0, max(0, 1 - 2 - 1) = 0; row 1: 1 - 0 + 0.5 = 1.5 twice
    assert LOSSES.get("margin")(pos, neg, valid, margin=1.0).item() == pytest.approx(0.75)
    assert LOSSES.get("margin")(pos, neg, valid, margin=2.0).item() == pytest.approx((0.5 + 2.5) / 2)


def test_no_valid_negative_costs_only_the_positive_term():
    none = torch.zeros_like(valid)
    assert LOSSES.get("margin")(pos, neg, none).item() == 0.0
    assert LOSSES.get("softplus")(pos, neg, none).item() == pytest.approx((sp(-2) + sp(0)) / 2, rel=1e-6)
