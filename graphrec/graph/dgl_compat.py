"""Importing DGL next to a torch it was not built for.

DGL 2.1.0 is the newest DGL wheel for Linux on PyPI. Its core (``libdgl``: graphs,
sampling, message passing) works with torch 2.13; two parts do not:

* ``dgl.graphbolt`` — the data-loading stack behind ``dgl.distributed`` only — loads a
  native library that exists for torch <= 2.2 only, and ``import dgl`` imports it
  eagerly (and fails). :func:`import_dgl` registers an empty placeholder module under
  that name before importing DGL, so everything but GraphBolt works;
  ``dgl.distributed`` stays unusable (graphrec never uses it).
* the tensor adapter (``libtensoradapter_pytorch_<version>.so``) ships for torch <= 2.2.1;
  without it DGL allocates its own buffers (slower for some kernels, same results).

``DGLBACKEND`` defaults to ``pytorch`` here so that DGL neither guesses nor writes
``~/.dgl/config.json``. Install with ``pip install 'graphrec[dgl]'`` after torch (the
extra pins ``dgl==2.1.0``; its only torch-dependent requirement, ``torchdata``, accepts
any torch >= 2, so pip keeps the installed torch).
"""

from __future__ import annotations

import os
import sys
import types

DGL_VERSION = "2.1.0"
INSTALL_HINT = f"pip install 'graphrec[dgl]' (DGL {DGL_VERSION}, after torch)"


def import_dgl():
    """The ``dgl`` module, imported with GraphBolt stubbed (see the module docstring);
    ``ImportError`` naming the fix when DGL is absent or broken."""
    if "dgl" in sys.modules and hasattr(sys.modules["dgl"], "heterograph"):
        return sys.modules["dgl"]
    os.environ.setdefault("DGLBACKEND", "pytorch")
    if "dgl.graphbolt" not in sys.modules:
        stub = types.ModuleType("dgl.graphbolt")
        stub.__doc__ = "graphrec placeholder: GraphBolt's native library does not load with this torch"
        sys.modules["dgl.graphbolt"] = stub
    try:
        import dgl
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "dgl":
            raise ImportError(f"DGL is not installed: {INSTALL_HINT}") from None
        raise ImportError(f"DGL failed to import ({err}): {INSTALL_HINT}") from None
    except Exception as err:  # noqa: BLE001 - a broken DGL fails with OSError, AttributeError, ...
        raise ImportError(f"DGL failed to import ({type(err).__name__}: {err}): {INSTALL_HINT}") from None
    return dgl


def dgl_available() -> tuple[bool, str]:
    """``(True, "")`` when :func:`import_dgl` works, else ``(False, reason)``."""
    try:
        import_dgl()
    except ImportError as err:
        return False, str(err)
    return True, ""
