"""FAQ entries, content files and the index sync."""
