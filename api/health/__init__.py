"""Content health: the flags API, the editor pages and the health commands."""
