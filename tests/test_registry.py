"""The generic registry of pluggable parts (graphrec/registry.py)."""

import pytest

from graphrec.registry import Registry


def test_register_get_names_in_order():
    reg = Registry("widget")

    @reg.register_as("b")
    class B:
        """Bee: the second letter.

        More detail."""

    @reg.register_as("a")
    def a():
        """Ay."""

    assert reg.names() == ("b", "a") and list(reg) == ["b", "a"] and len(reg) == 2
    assert reg.get("b") is B and reg.get("a") is a and "a" in reg and "c" not in reg
    assert reg.name_of(B) == "b" and reg.name_of(B()) == "b" and reg.name_of(a) == "a"
    assert reg.summaries() == {"b": "Bee: the second letter.", "a": "Ay."}
    with pytest.raises(ValueError, match=r"unknown widget 'c' \(choose from b, a\)"):
        reg.get("c")
    with pytest.raises(ValueError, match="not a registered widget"):
        reg.name_of(int)


def test_a_name_is_registered_once():
    reg = Registry("widget")
    reg.register_as("x")(int)
    reg.register_as("x")(int)  # the same object again: harmless (module re-import)
    with pytest.raises(ValueError, match="'x' is already registered"):
        reg.register_as("x")(float)
