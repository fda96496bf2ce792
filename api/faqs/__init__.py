"""The FAQ entries API and the content commands."""
