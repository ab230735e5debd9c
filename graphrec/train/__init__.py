"""Training loops, the Ray Train wrapper and checkpoints (to come)."""
