"""Embedding, micro-batching, indexes and retrieval."""
