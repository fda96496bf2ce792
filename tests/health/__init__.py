"""Content health: scores, flags, feedback import and editor pages."""
