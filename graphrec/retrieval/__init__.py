"""FAISS retrieval indexes (to come)."""
