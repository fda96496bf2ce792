"""Sentence embeddings: encoders, micro-batching and the packaged model build."""
