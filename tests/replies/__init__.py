"""Agent replies: drafts, triage, outcomes and metrics."""
