"""Models: TwHIN knowledge-graph embeddings and PinSage (to come)."""
