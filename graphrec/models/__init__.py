"""Models: TwHIN knowledge-graph embeddings and PinSage."""

from graphrec.models.losses import LOSSES
from graphrec.models.pinsage import PinSage, PinSageConv, max_margin_loss, recency_weighted_mean
from graphrec.models.scores import SCORES, ScoreFunction, make_score
from graphrec.models.twhin import TwHIN

__all__ = ["LOSSES", "SCORES", "PinSage", "PinSageConv", "ScoreFunction", "TwHIN", "make_score", "max_margin_loss",
           "recency_weighted_mean"]
