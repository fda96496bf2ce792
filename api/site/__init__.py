"""The public FAQ site: pages, its JSON API and its commands."""
