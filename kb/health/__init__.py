"""Content health: scores, flags and the feedback editors act on."""
