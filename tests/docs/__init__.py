"""The docs stay true to the code."""
