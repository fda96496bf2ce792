"""Backups, crash safety, export, replicas and migrations."""
