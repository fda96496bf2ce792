"""Web plumbing shared by every feature: dependencies, limits, logs, rendering."""
