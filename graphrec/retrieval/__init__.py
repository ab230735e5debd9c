"""FAISS retrieval over exported embeddings: build, search (item→item), recommend (user→items)."""

from graphrec.retrieval.index import Index, IndexConfig, build_index, make_index
from graphrec.retrieval.search import recommend, similar_items

__all__ = ["Index", "IndexConfig", "build_index", "make_index", "recommend", "similar_items"]
