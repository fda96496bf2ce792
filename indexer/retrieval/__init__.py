"""Hybrid retrieval: dense and BM25 fused per entry, and its confidence."""
