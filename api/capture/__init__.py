"""Capture: the threads and drafts API, the review pages, the import commands."""
