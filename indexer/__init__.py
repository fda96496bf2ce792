"""Embedding, FAISS and lexical indexes, and hybrid retrieval (no database, no web here)."""
