"""Agent replies: drafts, channels, triage, outcomes and the agents' metrics."""
