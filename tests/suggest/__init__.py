"""Suggestions for posts and files of posts."""
