"""Dataset generators and locations of public datasets."""

from __future__ import annotations

import os
from pathlib import Path

from graphrec.datasets.pinterest import PinterestConfig, generate_pinterest

#: default location of MovieLens-100K (RecBole atomic files), relative to the project root
DEFAULT_ML100K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-100k"


def ml100k_dir() -> Path:
    """MovieLens-100K directory: ``$GRAPHREC_DATA`` if set, else ``../shared/datasets/ml-100k``
    next to the project root. The data is never shipped with graphrec (its licence
    forbids redistribution)."""
    return Path(os.environ.get("GRAPHREC_DATA", DEFAULT_ML100K))


__all__ = ["PinterestConfig", "generate_pinterest", "ml100k_dir", "DEFAULT_ML100K"]
