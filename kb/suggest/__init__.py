"""Suggesting the FAQ that answers a post, for one post, a file, or an evaluation."""
