"""Agent replies: outcomes and agent metrics API."""
