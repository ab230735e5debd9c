"""Checkpoints: one ``state.pt`` (tensors and plain values only) per checkpoint directory.

Written to a temporary file and renamed, read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

STATE = "state.pt"


def save_checkpoint(directory: str | Path, state: dict, name: str = STATE) -> Path:
    """Atomically write ``state`` (model/optimiser state dicts, epoch, metrics) to
    ``directory/name``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, directory / name)
    return directory / name


def load_checkpoint(directory: str | Path) -> dict:
    path = Path(directory) / STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)
