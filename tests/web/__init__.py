"""Web plumbing: limits, logs, metrics, secrets, fuzzing."""
