import pytest

from graphrec.sampling import PPRHardNegatives, RandomWalkSampler

PUP = ["pin:saved_by:user", "user:saves:pin"]
PBP = ["pin:in_board:board", "board:has_pin:pin"]


@pytest.fixture(scope="module")
def hard(small_pins_graph):
    """Exact (power-iteration) PPR hard negatives over both pin metapaths, ranks [10%, 30%)."""
    s = RandomWalkSampler(small_pins_graph, [(PUP, 1.0), (PBP, 1.0)])
    return PPRHardNegatives(small_pins_graph, s, band=(0.1, 0.3), alpha=0.3, method="power")
