"""Models: TwHIN knowledge-graph embeddings (PinSage to come)."""

from graphrec.models.scores import SCORES, make_score
from graphrec.models.twhin import TwHIN

__all__ = ["SCORES", "TwHIN", "make_score"]
