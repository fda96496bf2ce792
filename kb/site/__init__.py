"""The public FAQ site: articles as visitors see them, views, votes and search."""
