"""Named, pluggable parts (the PyTorch-BigGraph plugin pattern).

A :class:`Registry` maps names to implementations of one kind of part: score functions
(:data:`graphrec.models.scores.SCORES`), losses (:data:`graphrec.models.losses.LOSSES`).
Implementations register themselves where they are defined::

    SCORES = Registry("score function")

    @SCORES.register_as("distmult")
    class DistMult(ScoreFunction): ...

and everything that chooses between them — the model, the config's ``Literal`` of allowed
names, the generated config reference — reads the one registry, so a new part is added
in one place. A base module: any layer may define or read a registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> implementations of one kind of part, in registration order.

    Args:
        kind: what the entries are, for messages (``"score function"``, ``"loss"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register_as(self, name: str) -> Callable[[T], T]:
        """Decorator registering a class or function under ``name`` (returned unchanged).
        Registering a different object under a taken name is an error."""

        def decorator(obj: T) -> T:
            prev = self._entries.setdefault(name, obj)
            if prev is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered ({_qualname(prev)})")
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The implementation registered as ``name``; ``ValueError`` listing the choices
        when there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r} (choose from {', '.join(self._entries)})") from None

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order (e.g. for ``Literal[registry.names()]``)."""
        return tuple(self._entries)

    def name_of(self, obj: object) -> str:
        """The name ``obj`` (or, for an instance, its class) is registered under."""
        for name, entry in self._entries.items():
            if entry is obj or (not inspect.isclass(obj) and entry is type(obj)):
                return name
        raise ValueError(f"{_qualname(obj)} is not a registered {self.kind}")

    def summaries(self) -> dict[str, str]:
        """``name -> first paragraph of the entry's docstring`` (one line, for generated documentation)."""
        return {name: (inspect.getdoc(entry) or "").strip().split("\n\n")[0].replace("\n", " ")
                for name, entry in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def _qualname(obj: object) -> str:
    obj = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    return f"{obj.__module__}.{obj.__qualname__}"
