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


#: the RecBole atomic files of MovieLens-100K with its Freebase knowledge graph
ML100K_FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item", "ml-100k.kg", "ml-100k.link")


def ml100k_missing(data: str | Path) -> str | None:
    """``None`` when ``data`` holds every file of :data:`ML100K_FILES`, otherwise one line
    saying what is missing (for benchmarks and tools that skip cleanly without the data)."""
    missing = [f for f in ML100K_FILES if not (Path(data) / f).is_file()]
    if not missing:
        return None
    return (f"ML-100K not found in {data} (missing {', '.join(missing)}); "
            "set GRAPHREC_DATA or --data to the directory of the RecBole atomic files")


__all__ = ["PinterestConfig", "generate_pinterest", "ml100k_dir", "ml100k_missing", "DEFAULT_ML100K", "ML100K_FILES"]
