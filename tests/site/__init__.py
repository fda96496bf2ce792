"""The public FAQ site: pages, views, votes, search."""
