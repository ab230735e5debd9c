"""Layer-wise (MapReduce-style) inference (:mod:`.layerwise`) and embedding export (:mod:`.export`)."""
