"""FAQ entries: articles, revisions, phrasings, content files and merges."""
