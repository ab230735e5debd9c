"""graphrec: graph-learning recommendation platform.

Tables go in (``graphrec.graph``), node embeddings and retrieval indexes come out.
"""

__version__ = "0.1.0"

from graphrec.errors import DataError, GraphrecError, SchemaError, StoreError  # noqa: E402

__all__ = ["__version__", "GraphrecError", "SchemaError", "DataError", "StoreError"]
