"""Models: TwHIN knowledge-graph embeddings and PinSage."""

from graphrec.models.losses import LOSSES
from graphrec.models.pinsage import PinSage, PinSageConv, max_margin_loss
from graphrec.models.scores import SCORES, ScoreFunction, make_score
from graphrec.models.twhin import TwHIN
from graphrec.models.users import UserTable, recency_weighted_mean

__all__ = ["LOSSES", "SCORES", "PinSage", "PinSageConv", "ScoreFunction", "TwHIN", "UserTable", "make_score",
           "max_margin_loss", "recency_weighted_mean"]
