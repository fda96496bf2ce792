"""Domain model, persistence and the knowledge loop of faqloop (no web framework here)."""
