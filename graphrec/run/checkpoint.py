"""Checkpoints: one ``state.pt`` (tensors and plain values only) per checkpoint directory,
with its SHA-256 beside it.

``save_checkpoint`` writes ``state.pt`` to a temporary sibling, fsyncs and renames it,
then writes ``state.pt.sha256``; a checkpoint without a matching checksum (a crash
between the two, a truncated or flipped file) is *corrupt*. :class:`CheckpointDir`
keeps the last few checkpoints of a run and, on resume, takes the newest one that
verifies, warning about (and skipping) corrupt ones. Read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import torch

from graphrec.errors import GraphrecError
from graphrec.io import atomic_file, sha256_file, write_bytes

log = logging.getLogger(__name__)

STATE = "state.pt"


class CorruptCheckpoint(GraphrecError):
    """A checkpoint file that is missing its checksum, does not match it, or does not load."""


def save_checkpoint(directory: str | Path, state: dict, name: str = STATE) -> Path:
    """Write ``state`` (model/optimiser state dicts, epoch, metrics) to ``directory/name``
    atomically, then its checksum ``directory/name.sha256``; returns the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with atomic_file(path, overwrite=True) as tmp:
        torch.save(state, tmp)
        digest = sha256_file(tmp)
    write_bytes(directory / f"{name}.sha256", f"{digest}  {name}\n".encode())
    return path


def checkpoint_digest(directory: str | Path, name: str = STATE) -> str | None:
    """The SHA-256 :func:`save_checkpoint` recorded for ``directory/name`` (None if none)."""
    sums = Path(directory) / f"{name}.sha256"
    text = sums.read_text().split() if sums.is_file() else []
    return text[0] if text else None


def load_checkpoint(directory: str | Path, name: str = STATE, verify: bool = True) -> dict:
    """The state saved by :func:`save_checkpoint`; :class:`CorruptCheckpoint` when the file
    is missing, does not match its checksum (``verify``) or does not load."""
    path = Path(directory) / name
    if not path.is_file():
        raise CorruptCheckpoint(f"{path}: no checkpoint")
    if verify:
        expected = checkpoint_digest(directory, name)
        if expected is None:
            raise CorruptCheckpoint(f"{path}: no checksum file {name}.sha256 (an interrupted write?)")
        actual = sha256_file(path)
        if actual != expected:
            raise CorruptCheckpoint(f"{path}: sha256 {actual[:12]} does not match its checksum {expected[:12]}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CorruptCheckpoint(f"{path}: cannot be loaded ({type(err).__name__}: {err})") from None


_TAG = re.compile(r"^ckpt-(\d{5})-(\d{9})$")


class CheckpointDir:
    """The checkpoints of one run under ``root`` (``RUN_DIR/checkpoints``).

    A checkpoint is named by the position training resumes at: ``ckpt-EEEEE-SSSSSSSSS``
    = epoch ``E`` (0-based), after ``S`` steps of it (``S = 0``: the epoch's start, i.e.
    the previous epoch finished). Names sort in training order; the newest ``keep`` are
    kept.
    """

    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root)
        self.keep = max(1, keep)

    @staticmethod
    def tag(epoch: int, step: int) -> str:
        return f"ckpt-{epoch:05d}-{step:09d}"

    def tags(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _TAG.match(p.name) and p.is_dir())

    def save(self, epoch: int, step: int, state: dict) -> Path:
        """Save ``state`` as the checkpoint at ``(epoch, step)``; prune older ones."""
        path = save_checkpoint(self.root / self.tag(epoch, step), state)
        for old in self.tags()[: -self.keep]:
            shutil.rmtree(self.root / old, ignore_errors=True)
        return path

    def latest(self) -> tuple[str, dict] | None:
        """``(tag, state)`` of the newest checkpoint that verifies, or ``None``. Corrupt
        ones are skipped with a warning (the previous one is used)."""
        for tag in reversed(self.tags()):
            try:
                return tag, load_checkpoint(self.root / tag)
            except CorruptCheckpoint as err:
                log.warning("skipping corrupt checkpoint: %s", err)
        return None

    def load(self, tag: str) -> dict:
        return load_checkpoint(self.root / tag)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
