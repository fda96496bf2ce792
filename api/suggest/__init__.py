"""The suggest API and the suggestion commands (file, eval, calibrate)."""
